"""Which property of a frozen encoder tracks its policies' zero-shot transfer? Spearman ρ over encoders.

Each encoder is one vision model with policies trained on it (one method of one run). From the
run's ``transfer/summary.json`` it takes the method's normalised IQM per domain and its transfer
ratios; from a metrics file (a run's ``metrics.json``, or the same scored again) MIG and the MLP
probe of the named factors (their mean); from a ``benchmarks/latent_readout.py --json`` file the
MLP readout of the same factors on a source walk and on a walk in each target. It prints the
table and, per target, Spearman's ρ of the score and of the ratio against each property, with
the two-sided permutation p: exact (every ordering) up to 9 encoders, else 200,000 random ones.

With a handful of encoders only the largest ρ mean anything (over 7, ρ 0.79 has p ≈ 0.05), and a
readout measured *in the target* is nearly what transfer measures: it locates a failure rather
than predicting one.

The spec is a JSON list, one entry per encoder (paths relative to the working directory)::

    [{"name": "darla0", "run": "runs/sa_t200", "method": "darla",
      "metrics": "runs/sa_t200/vision/metrics.json",
      "readout": "probes/seed0.json", "readout_key": "/abs/path/seen/by/the/readout/model.pt"}, ...]

``readout_key`` is the checkpoint path as the readout recorded it; it may be left out when the
readout file holds one encoder. An entry may have no ``readout`` (a readout costs 10–55 min of CPU
per encoder): its readout columns print as "—", and each readout's ρ is taken over the encoders that
have one, with that n printed.

    python benchmarks/transfer_correlates.py SPEC.json [--factors good_x good_y bad_x bad_y]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

EXACT_UP_TO = 9


def spearman_permutation(x: list[float], y: list[float], *, seed: int = 0, n_random: int = 200_000) -> tuple[float, float]:
    """Spearman's ρ (average ranks for ties) and its two-sided permutation p-value."""
    rx, ry = rankdata(x), rankdata(y)
    if ry.std() == 0 or rx.std() == 0:  # a constant ranks nothing
        return float("nan"), float("nan")
    zx = (rx - rx.mean()) / rx.std()
    zy = (ry - ry.mean()) / ry.std()
    rho = float(np.mean(zx * zy))
    n = len(x)
    if n <= EXACT_UP_TO:
        perms = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.argsort(rng.random((n_random, n)), axis=1)
    sims = (zy[perms] * zx).mean(axis=1)
    return rho, float(np.mean(np.abs(sims) >= abs(rho) - 1e-12))


def _read_json(entry: dict, path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"{entry['name']}: cannot read {path}: {getattr(e, 'strerror', None) or e}") from None


def encoder_row(entry: dict, base: Path, factors: list[str]) -> dict[str, float]:
    summary = _read_json(entry, base / entry["run"] / "transfer" / "summary.json")
    if entry["method"] not in summary["methods"]:
        raise SystemExit(f"{entry['name']}: no method {entry['method']!r} in {entry['run']}")
    s = summary["methods"][entry["method"]]
    metrics = _read_json(entry, base / entry["metrics"])
    mig = (metrics.get("metrics", metrics))["mig"]["mig"]
    missing = [f for f in factors if f not in metrics.get("probe", {})]
    if missing:
        raise SystemExit(f"{entry['name']}: {entry['metrics']} has no probe of {', '.join(missing)}")
    ro = None
    if entry.get("readout") is not None:
        readouts = _read_json(entry, base / entry["readout"])["encoders"]
        key = entry.get("readout_key")
        if key is None:
            if len(readouts) != 1:
                raise SystemExit(f"{entry['name']}: {entry['readout']} holds {len(readouts)} encoders: name one with readout_key")
            key = next(iter(readouts))
        if key not in readouts:
            raise SystemExit(f"{entry['name']}: no encoder {key} in {entry['readout']}")
        ro = readouts[key]["factors"]
    # an encoder without a readout file gets NaN there, and the readouts' ρ leave it out
    row = {"MIG": mig, "probe": float(np.mean([metrics["probe"][f] for f in factors])),
           "readout source": float(np.mean([ro[f]["mlp"] for f in factors])) if ro else float("nan")}
    for d in summary["domains"]:
        row[f"score {d}"] = s["normalised"][d]["iqm"]
    for d in summary["domains"][1:]:
        if ro and f"mlp {d}" not in ro[factors[0]]:
            raise SystemExit(f"{entry['name']}: {entry['readout']} has no readout in {d} (run it with --test-domains)")
        row[f"readout {d}"] = float(np.mean([ro[f][f"mlp {d}"] for f in factors])) if ro else float("nan")
        row[f"ratio {d}"] = s["transfer_ratio"][d]
    return row


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", type=Path, help="JSON list of encoders (see above)")
    p.add_argument("--factors", nargs="+", default=["good_x", "good_y", "bad_x", "bad_y"],
                   help="factors whose probe and readout are averaged (default: seek-avoid's objects)")
    p.add_argument("--json", type=Path, help="also write the table and every ρ here")
    args = p.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    base = Path.cwd()
    rows = {e["name"]: encoder_row(e, base, args.factors) for e in spec}
    names = list(rows)
    if len(names) < 3:
        raise SystemExit("a rank correlation needs at least 3 encoders")
    cols = list(rows[names[0]])
    if any(list(r) != cols for r in rows.values()):
        raise SystemExit("the encoders' runs scored different domains")
    targets = [c.removeprefix("ratio ") for c in cols if c.startswith("ratio ")]

    left = max(len(c) for c in cols) + 2
    width = max(8, max(len(n) for n in names) + 2)
    print(f"{'':<{left}}" + "".join(f"{n:>{width}}" for n in names))
    for c in cols:
        print(f"{c:<{left}}" + "".join(f"{rows[n][c]:>{width}.3f}" if np.isfinite(rows[n][c]) else f"{'—':>{width}}"
                                       for n in names))
    print(f"\nSpearman ρ over {len(names)} encoders (n: fewer, where some have no readout), two-sided permutation p "
          f"(exact up to {EXACT_UP_TO} encoders, else 200,000 random permutations)")
    out: dict = {"encoders": rows, "rho": {}}
    for d in targets:
        for y in (f"score {d}", f"ratio {d}"):
            for x in ("MIG", "probe", "readout source", f"readout {d}", "score source"):
                have = [n for n in names if np.isfinite(rows[n][x])]
                if len(have) < 3:
                    rho, pv = float("nan"), float("nan")
                else:
                    rho, pv = spearman_permutation([rows[n][x] for n in have], [rows[n][y] for n in have])
                out["rho"][f"{y} ~ {x}"] = {"rho": rho, "p": pv, "n": len(have)}
                n_note = f"   (n {len(have)})" if len(have) < len(names) else ""
                print(f"  {y:<28} against {x:<28} ρ {rho:+.2f}   p {pv:.3f}{n_note}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "transfer_correlates.py"))
