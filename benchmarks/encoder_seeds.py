"""Does a side-by-side ranking survive another stage-1 seed? Runs of one config, pooled.

A run's table has one vision model per method and several agent seeds on it, so its confidence
intervals cover the agents' variance, not the encoder's. Running the same config with another
top-level ``seed`` (``--set seed=1``: other frames, another stage-1 initialisation, the same agent
seeds) gives each method another encoder; another ``vision.init_seed`` gives another one on the
same frames. This script reads each run's ``transfer/episodes.csv``
and prints, per method and domain:

- each run's normalised IQM over its agent seeds (one column per run: one encoder each);
- the pooled normalised IQM [95% CI] over every (run, agent seed) policy, and the transfer ratio
  (target mean ÷ source mean, raw returns) of the pooled policies;
- P(method > the first method) over the pooled policies, per target.

Each pooled number has two 95% CIs. The first is the report's, a bootstrap over policies, which
treats policies as independent; policies on one encoder are not. The second is a two-level
bootstrap (encoders, then the policies on each), which carries the encoder's variance: with two
or three encoders it is wide, and it is the one to read before calling a ranking. The per-run
columns show whether a ranking holds on every encoder. Every run must have scored the same
domains on the same episodes (the same ``transfer`` section and env), which this script checks.

    python benchmarks/encoder_seeds.py runs/seek_avoid_cpu runs/sa_seed1 [--methods darla dae icf]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

from agents.stats import hierarchical_iqm_ci, hierarchical_probability_of_improvement
from darla.stages.transfer import summarize_transfer


def read_run(run: Path) -> tuple[dict, dict[tuple[str, str, int], list[float]], dict[tuple[str, str, int], list[int]]]:
    """(transfer summary, (method, domain, seed) → returns, and → env seeds in episode order)."""
    missing = [f for f in ("summary.json", "episodes.csv") if not (run / "transfer" / f).is_file()]
    if missing:
        raise SystemExit(f"{run}: no transfer/{' or transfer/'.join(missing)} (not a run directory whose transfer stage ran)")
    summary = json.loads((run / "transfer" / "summary.json").read_text())
    rets: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    env_seeds: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    with open(run / "transfer" / "episodes.csv", newline="") as f:
        for row in csv.DictReader(f):
            key = (row["method"], row["domain"], int(row["seed"]))
            rets[key].append(float(row["ret"]))
            env_seeds[key].append(int(row["env_seed"]))
    return summary, rets, env_seeds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories of one config that differ in `seed`")
    p.add_argument("--methods", nargs="+", help="methods to pool (default: those every run has, in the first run's order)")
    p.add_argument("--json", type=Path, help="also write the pooled summary here")
    args = p.parse_args(argv)

    runs = [read_run(r) for r in args.runs]
    first = runs[0][0]
    domains = first["domains"]
    episodes: dict[str, list[int]] = {}  # domain → env seeds of its episodes, the same for every policy
    for path, (s, _, env_seeds) in zip(args.runs, runs):
        if s["domains"] != domains or s["references"] != first["references"]:
            raise SystemExit(f"{path}: other domains or references than {args.runs[0]}: not the same transfer episodes")
        for (_, d, _), v in env_seeds.items():
            if episodes.setdefault(d, v) != v:
                raise SystemExit(f"{path}: its policies were not all scored on {args.runs[0]}'s {d} episodes")
    common = [m for m in first["method_order"] if all(m in s["method_order"] for s, _, _ in runs)]
    methods = args.methods or common
    missing = [m for m in methods if m not in common]
    if missing:
        raise SystemExit(f"not in every run: {', '.join(missing)}")
    refs = first["references"]
    unnormalised = [d for d in domains if not (refs.get(d, {}).get("oracle") is not None and refs[d]["oracle"] > refs[d]["random"])]
    if unnormalised:
        raise SystemExit(f"no oracle reference for {', '.join(unnormalised)}: this script compares normalised scores")

    def rows(rets: dict[tuple[str, str, int], list[float]], offset: int) -> list[dict]:
        return [{"method": m, "domain": d, "seed": offset + s, "ret": r} for (m, d, s), v in rets.items() if m in methods for r in v]

    # each run alone (one encoder), then every policy pooled: policy id = run index × 1000 + agent seed
    per_run = []
    for _, rets, _ in runs:
        seeds = sorted({s for (m, _, s) in rets if m in methods})
        per_run.append(summarize_transfer(rows(rets, 0), domains, methods, seeds, refs))
    pooled_rows = [row for i, (_, rets, _) in enumerate(runs) for row in rows(rets, i * 1000)]
    pooled = summarize_transfer(pooled_rows, domains, methods, sorted({r["seed"] for r in pooled_rows}), refs)

    # the two-level bootstrap: each run is one encoder, its agent seeds the policies on it
    def groups(m: str, d: str) -> list[list[float]]:
        return [r["methods"][m]["normalised"][d]["per_seed"] for r in per_run]

    hier: dict = {"iqm_ci": {m: {d: list(hierarchical_iqm_ci(groups(m, d))) for d in domains} for m in methods},
                  "probability_of_improvement": {d: {m: hierarchical_probability_of_improvement(groups(m, d), groups(methods[0], d))
                                                     for m in methods[1:]} for d in domains}}

    print("normalised IQM per run (one encoder each; agent seeds within) and pooled, with 95% CIs over")
    print("policies [p] and over encoders, then their policies [e]")
    print("runs: " + ", ".join(f"r{i} = {p}" for i, p in enumerate(args.runs)))
    head = f"{'method':<12}{'domain':<20}" + "".join(f"{'r' + str(i):>7}" for i in range(len(runs)))
    print(head + f"{'pooled IQM [p] [e]':>40}{'ratio':>8}   {'P(> ' + methods[0] + ') [p] [e]'}")
    for m in methods:
        for d in domains:
            n = pooled["methods"][m]["normalised"][d]
            e = hier["iqm_ci"][m][d]
            ratio = pooled["methods"][m]["transfer_ratio"].get(d)
            poi = pooled["probability_of_improvement"].get(d, {}).get(m) if m != methods[0] else None
            line = f"{m:<12}{d:<20}" + "".join(f"{r['methods'][m]['normalised'][d]['iqm']:7.2f}" for r in per_run)
            line += f"{n['iqm']:9.2f} [{n['iqm_ci'][0]:5.2f}, {n['iqm_ci'][1]:5.2f}] [{e[0]:5.2f}, {e[1]:5.2f}]".rjust(40)
            line += f"{ratio:8.2f}" if ratio is not None else f"{'':8}"
            if poi:
                he = hier["probability_of_improvement"][d][m]["ci"]
                line += f"{poi['p']:8.2f} [{poi['ci'][0]:.2f}, {poi['ci'][1]:.2f}] [{he[0]:.2f}, {he[1]:.2f}]"
            print(line)
    if args.json:
        args.json.write_text(json.dumps({"runs": [str(r) for r in args.runs], "pooled": pooled, "over_encoders": hier}, indent=1))


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "encoder_seeds.py"))
