"""Disentanglement-metric cost at full settings: seconds per metric's pure ``compute_*`` on one
synthetic dataset, their total against a 60 s budget, and each relative to one sklearn
LogisticRegression fit on the same codes (the in-run baseline, so numbers from different machines
or loads compare).

Data: ``--factor-sizes`` (default dSprites' 3, 6, 40, 32, 32 — the many-class worst case; the
seek_avoid-like ``4,4,4,3,6`` is much cheaper for DCI and SAP), codes = a fixed random linear mix
of the centred, scaled factors into ``--latents`` dims plus Gaussian noise (std 0.1). The train
(``--n``) and test (``--n-test``) codes are encoded once. The β-VAE and FactorVAE metrics need
paired batches rather than iid codes: their inputs are generated with the same linear "encoder"
(time shown separately as "inputs"), then their pure functions are timed. Each metric runs as
its module does (dci and modularity limit their fits to 1 thread; beta_vae does not).

    python benchmarks/metrics_throughput.py [--n 10000] [--n-test 5000] [--latents 10]
                                            [--factor-sizes 3,6,40,32,32] [--dci-exact]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from envs.factors import sample_uniform_factors
from vision.metrics import beta_vae, dci, factor_vae, mig, modularity, sap, udr
from vision.metrics.utils import generate_batch_factor_code

BUDGET_S = 60.0


class MixData:
    """GroundTruthData whose "images" are the factor values, (1, 1, F)."""

    def __init__(self, sizes: tuple[int, ...]) -> None:
        self.factor_sizes = sizes
        self.factor_names = tuple(f"f{i}" for i in range(len(sizes)))
        self.observation_shape = (1, 1, len(sizes))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_uniform_factors(self.factor_sizes, n, rng)

    def sample_observations_from_factors(
        self, factors: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return factors.astype(np.float32).reshape(len(factors), 1, 1, -1)


def linear_encoder(
    sizes: tuple[int, ...], latents: int, seed: int
) -> Callable[[np.ndarray], np.ndarray]:
    """images (n, 1, 1, F) of factor classes → codes = (v/size − ½)·A + 0.1·ε, A ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(len(sizes), latents))
    scale = np.asarray(sizes, dtype=np.float64)

    def represent(images: np.ndarray) -> np.ndarray:
        v = images.reshape(len(images), -1) / scale - 0.5
        return v @ mix + 0.1 * rng.normal(size=(len(v), latents))

    return represent


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="train points (metrics' num_train)")
    p.add_argument("--n-test", type=int, default=5_000, help="test/eval points")
    p.add_argument("--latents", type=int, default=10)
    p.add_argument("--factor-sizes", default="3,6,40,32,32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dci-exact",
        action="store_true",
        help="also time dlib's GradientBoostingClassifier (minutes)",
    )
    args = p.parse_args()

    sizes = tuple(int(s) for s in args.factor_sizes.split(","))
    data = MixData(sizes)
    represent = linear_encoder(sizes, args.latents, args.seed)
    rng = np.random.default_rng(args.seed)
    (train, test), enc_s, _ = timed(
        lambda: (
            generate_batch_factor_code(data, represent, args.n, rng),
            generate_batch_factor_code(data, represent, args.n_test, rng),
        )
    )
    print(
        f"codes: train {train.codes.shape}, test {test.codes.shape}, factor sizes {sizes}; "
        f"encoded in {enc_s:.2f} s; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )

    def baseline() -> LogisticRegression:
        with threadpool_limits(
            limits=1
        ):  # as dci and modularity fit theirs (see their NUM_THREADS)
            return LogisticRegression(**beta_vae.CLASSIFIER_KWARGS).fit(
                train.codes, train.factors[:, 0]
            )

    _, base_s, base_cpu = timed(baseline)
    print(
        f"baseline: LogisticRegression({beta_vae.CLASSIFIER_KWARGS}), 1 thread, train codes → "
        f"factor 0 ({sizes[0]} classes): {base_s:.3f} s wall, {base_cpu:.3f} s CPU"
    )

    bv = beta_vae.FULL
    (bv_tr, bv_ev), bv_in, _ = timed(
        lambda: (
            beta_vae.beta_vae_points(data, represent, bv["num_train"], rng, bv["batch_size"]),
            beta_vae.beta_vae_points(data, represent, bv["num_eval"], rng, bv["batch_size"]),
        )
    )
    fv = factor_vae.FULL
    (fv_tr, fv_ev), fv_in, _ = timed(
        lambda: (
            factor_vae.factor_vae_batches(data, represent, fv["num_train"], rng, fv["batch_size"]),
            factor_vae.factor_vae_batches(data, represent, fv["num_eval"], rng, fv["batch_size"]),
        )
    )
    fv_codes = train.codes[: fv["num_variance_estimate"]]
    n_udr = udr.FULL["num_images"]
    udr_rng = np.random.default_rng(args.seed + 1)
    udr_codes = [train.codes[:n_udr] @ np.linalg.qr(udr_rng.standard_normal((args.latents, args.latents)))[0] for _ in range(10)]
    udr_kls = [np.ones(args.latents) for _ in range(10)]
    args3 = (train.codes, train.factors, test.codes, test.factors)

    jobs: dict[str, tuple[Callable[[], dict[str, Any]], str, float]] = {
        "beta_vae": (lambda: beta_vae.compute_beta_vae(*bv_tr, *bv_ev), "beta_vae", bv_in),
        "factor_vae": (
            lambda: factor_vae.compute_factor_vae(
                fv_codes,
                *fv_tr,
                *fv_ev,
                num_factors=len(sizes),
                prune_threshold=fv["prune_threshold"],
            ),
            "factor_vae",
            fv_in,
        ),
        "mig": (
            lambda: mig.compute_mig(train.codes, train.factors, num_bins=mig.FULL["num_bins"]),
            "mig",
            0.0,
        ),
        "dci": (lambda: dci.compute_dci(*args3, estimator=dci.FULL["estimator"]), "dci", 0.0),
        "sap": (lambda: sap.compute_sap(*args3, continuous=False), "sap", 0.0),
        "modularity": (
            lambda: modularity.compute_modularity(*args3, num_bins=modularity.FULL["num_bins"]),
            "modularity",
            0.0,
        ),
        # UDR: 10 models (the pairs a 10-seed sweep compares) on its FULL 1,000 shared images.
        "udr": (lambda: udr.udr_from_codes(udr_codes, udr_kls), "udr_mean", 0.0),
    }
    if args.dci_exact:
        jobs["dci (gbt, dlib exact)"] = (
            lambda: dci.compute_dci(*args3, estimator="gbt"),
            "dci",
            0.0,
        )

    extras = {  # secondary outputs worth a glance, by metric key
        "beta_vae": ("train_accuracy",),
        "factor_vae": ("num_active_dims",),
        "dci": ("completeness", "informativeness_test"),
        "modularity": ("explicitness_test",),
    }
    print(
        f"\n{'metric':<24}{'score':>8}{'wall s':>9}{'CPU s':>8}{'÷ LR fit':>10}{'inputs s':>10}  other"
    )
    total = 0.0
    for name, (fn, key, inputs_s) in jobs.items():
        out, wall, cpu = timed(fn)
        if name == "udr":
            out = {**out, "udr_mean": float(np.mean(out["udr"]))}
        if not name.endswith("exact)"):
            total += wall
        other = ", ".join(
            f"{k} {out[k]:.3f}" if isinstance(out[k], float) else f"{k} {out[k]}"
            for k in extras.get(key, ())
        )
        print(
            f"{name:<24}{out[key]:>8.3f}{wall:>9.2f}{cpu:>8.2f}{wall / base_s:>10.1f}{inputs_s:>10.2f}  {other}"
        )
    print(f"{'total (7 metrics)':<24}{'':>8}{total:>9.2f}{'':>8}{total / base_s:>10.1f}")
    print(f"total ÷ {BUDGET_S:.0f} s budget = {total / BUDGET_S:.2f}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "metrics_throughput.py"))
