"""How much of a reconstruction loss is each factor worth? Pixels against a DAE's feature spaces.

A β-VAE-DAE (DARLA) reconstructs in a frozen DAE's features, ``‖J(x̂) − J(x)‖²``, where a β-VAE
reconstructs pixels. What a reconstruction loss rewards an encoder for carrying is, to first
order, how far the loss moves when one factor changes. So this script renders pairs of
ground-truth images of the vision domain that differ in one factor only (every other factor
kept, the factor itself moved to another of its values, uniformly), and prints for each factor
the mean squared distance of a pair:

- in pixels (what a β-VAE's loss sees, up to its likelihood);
- in each requested layer of the DAE (``--layers``: ``conv1``…``convK``, ``bottleneck``, ``output``),
  the spaces ``vision.dae_layer`` chooses among.

Each column also gives the factor's share of that column's sum. A factor whose share falls from
the pixel column to a DAE layer's is one that a β-VAE-DAE reconstructing in that layer is paid
less to keep than a β-VAE is: the diagnostic for an encoder that drops what its DAE drops.

    python benchmarks/factor_energy.py runs/RUN/vision/dae/model.pt --env seek_avoid_v1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from envs.registry import get_domain, get_env_info
from vision.dae import DAE
from vision.registry import load_checkpoint


def factor_energy(
    data, dae: DAE, layers: list[str], n_pairs: int, rng: np.random.Generator, batch: int = 250,
) -> dict[str, dict[str, float]]:
    """Factor name → {space: mean squared distance between renders that differ in that factor only}."""
    sizes = np.asarray(data.factor_sizes)
    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(data.factor_names):
        if sizes[j] < 2:
            continue  # a factor with one value in this domain cannot change
        sums = dict.fromkeys(["pixels", *layers], 0.0)
        for start in range(0, n_pairs, batch):
            n = min(batch, n_pairs - start)
            f = data.sample_factors(n, rng)
            g = f.copy()
            g[:, j] = (f[:, j] + rng.integers(1, sizes[j], n)) % sizes[j]  # any other value, uniformly
            x = torch.as_tensor(np.asarray(data.sample_observations_from_factors(f, rng), dtype=np.float32))
            y = torch.as_tensor(np.asarray(data.sample_observations_from_factors(g, rng), dtype=np.float32))
            with torch.no_grad():
                sums["pixels"] += float((x - y).pow(2).flatten(1).sum(1).sum())
                for layer in layers:
                    sums[layer] += float((dae.features(x, layer) - dae.features(y, layer)).pow(2).flatten(1).sum(1).sum())
        out[name] = {k: v / n_pairs for k, v in sums.items()}
    return out


def shares(energy: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Each factor's fraction of its column's sum."""
    spaces = next(iter(energy.values())).keys()
    total = {s: sum(e[s] for e in energy.values()) for s in spaces}
    return {f: {s: e[s] / total[s] if total[s] > 0 else float("nan") for s in spaces} for f, e in energy.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dae", help="a trained DAE's model.pt (a run's vision/dae/model.pt)")
    ap.add_argument("--env", default="seek_avoid_v1")
    ap.add_argument("--domain", default="vision")
    ap.add_argument("--layers", nargs="+", default=None, help="DAE layers (default: every conv layer and the bottleneck)")
    ap.add_argument("--pairs", type=int, default=500, help="pairs per factor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dae = load_checkpoint(args.dae).eval()
    if not isinstance(dae, DAE):
        raise SystemExit(f"{args.dae} holds a {type(dae).__name__}, not a DAE")
    layers = args.layers or [f"conv{k}" for k in range(1, dae.n_conv + 1)] + ["bottleneck"]
    size = dae.obs_shape[1]
    data = get_env_info(args.env).ground_truth(size, get_domain(args.env, args.domain))
    t0 = time.time()
    energy = factor_energy(data, dae, layers, args.pairs, np.random.default_rng(args.seed))
    share = shares(energy)
    cols = ["pixels", *layers]
    print(f"{args.env} at {size} px, domain {args.domain!r}, {args.pairs} pairs per factor: mean squared "
          f"distance between renders that differ in one factor (share of the column)")
    print(f"{'factor':>16} " + " ".join(f"{c:>17}" for c in cols))
    for name, e in energy.items():
        print(f"{name:>16} " + " ".join(f"{e[c]:9.2f} ({100 * share[name][c]:3.0f}%)" for c in cols))
    print(f"({time.time() - t0:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"dae": str(args.dae), "env": args.env, "energy": energy, "share": share}, indent=1))


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "factor_energy.py"))
