"""What is carrying each factor worth to a squared-error loss, and to a Bernoulli likelihood?

A decoder that is blind to one factor, and knows every other, does best by drawing the mean of the
frames that the factor's values would give (both a squared error and a Bernoulli cross-entropy
are minimised by the mean). An encoder that carries the factor lets the decoder draw the frame
itself. So the loss an encoder saves by carrying factor j, at the optimum, is

- squared error: ``Σ_pixels (x − m_j)²``, the factor's conditional variance;
- Bernoulli: ``Σ_pixels KL(Bern(x) ‖ Bern(m_j))``, the cross-entropy of ``m_j`` less that of ``x``;

where ``m_j`` averages the renders over every value of factor j (the factors are small and
discrete, so the mean is exact), the other factors kept. Each is averaged over ``--frames`` frames
of the domain, and each column also gives the factor's share of the column's sum. Equal shares in
the two columns mean the two losses value the factors alike, up to one scale that β absorbs: a
difference in what the two losses' encoders learn then lies in the path of training, not in what
the objective pays at its optimum.

    python benchmarks/factor_value.py --env reacher --size 32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from envs.registry import get_domain, get_env_info

LOSSES = ("squared_error", "bernoulli")


def bernoulli_kl(x: np.ndarray, m: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """KL(Bern(x) ‖ Bern(m)) per element, for x and m in [0, 1] (0 · log 0 taken as 0)."""
    m = np.clip(m, eps, 1 - eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(x > 0, x * np.log(x / m), 0.0)
        b = np.where(x < 1, (1 - x) * np.log((1 - x) / (1 - m)), 0.0)
    return a + b


def factor_value(data, n_frames: int, rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Factor name → {loss: mean loss saved per frame by carrying the factor}, for each factor with
    more than one value."""
    sizes = np.asarray(data.factor_sizes)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(data.factor_names):
        k = int(sizes[j])
        if k < 2:
            continue  # a factor with one value in this domain carries nothing
        f = data.sample_factors(n_frames, rng)
        x = np.asarray(data.sample_observations_from_factors(f, rng), dtype=np.float64)
        g = np.repeat(f, k, axis=0)
        g[:, j] = np.tile(np.arange(k), n_frames)  # every value of factor j, the others kept
        m = np.asarray(data.sample_observations_from_factors(g, rng), dtype=np.float64)
        m = m.reshape(n_frames, k, *x.shape[1:]).mean(1)
        out[name] = {
            "squared_error": float(((x - m) ** 2).reshape(n_frames, -1).sum(1).mean()),
            "bernoulli": float(bernoulli_kl(x, m).reshape(n_frames, -1).sum(1).mean()),
        }
    return out


def shares(value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each factor's fraction of its column's sum."""
    total = {c: sum(v[c] for v in value.values()) for c in LOSSES}
    return {f: {c: v[c] / total[c] if total[c] > 0 else float("nan") for c in LOSSES} for f, v in value.items()}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", default="reacher")
    ap.add_argument("--domain", default="vision")
    ap.add_argument("--size", type=int, default=32, help="frame size in pixels")
    ap.add_argument("--frames", type=int, default=200, help="frames per factor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    if args.frames < 1:
        ap.error(f"--frames must be at least 1, got {args.frames}")
    try:
        data = get_env_info(args.env).ground_truth(args.size, get_domain(args.env, args.domain))
    except KeyError as e:  # an unknown env or domain: the registry's message names it and the valid ones
        ap.error(e.args[0])
    t0 = time.time()
    value = factor_value(data, args.frames, np.random.default_rng(args.seed))
    share = shares(value)
    print(f"{args.env} at {args.size} px, domain {args.domain!r}, {args.frames} frames per factor: loss saved per "
          f"frame by carrying the factor (share of the column); bernoulli / squared error")
    print(f"{'factor':>18} {'squared error':>17} {'bernoulli':>17}  ratio")
    for name, v in value.items():
        ratio = v["bernoulli"] / v["squared_error"] if v["squared_error"] > 0 else float("nan")
        print(f"{name:>18} " + " ".join(f"{v[c]:9.2f} ({100 * share[name][c]:3.0f}%)" for c in LOSSES) + f"  {ratio:5.2f}")
    print(f"({time.time() - t0:.0f} s)")
    result = {"env": args.env, "domain": args.domain, "size": args.size, "frames": args.frames, "seed": args.seed,
              "value": value, "share": share}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "factor_value.py"))
