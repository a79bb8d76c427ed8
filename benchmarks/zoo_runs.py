"""Short stage-1 runs of every registry model on seek-avoid frames, for eyeballing traversals.

Builds one config per model from configs/quick.yaml (same frames, latents, batch), trains it with
``darla vision train`` for ``--steps`` steps and prints wall time, active latents and the final
loss terms. Each run leaves ``RUNS/zoo_<model>/vision/{traversals,recon}.png``.

    python benchmarks/zoo_runs.py [--steps 400] [--runs-dir runs/zoo] [MODEL ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
#: Model arguments for a short run (defaults elsewhere; capacity reaches C_max within the run).
PARAMS: dict[str, dict] = {
    "vae": {}, "beta_vae": {"beta": 4.0}, "capacity_vae": {"gamma": 100.0, "c_max": 25.0},
    "dae": {}, "beta_vae_dae": {"beta": 1.0}, "factor_vae": {"gamma": 35.0}, "beta_tcvae": {"beta": 6.0},
    "infogan": {}, "dcign": {},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(PARAMS))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--runs-dir", default="runs/zoo")
    args = ap.parse_args()
    base = yaml.safe_load((REPO / "configs/quick.yaml").read_text())
    Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
    for name in args.models:
        v = {k: base["vision"][k] for k in ("latent_dim", "n_frames", "batch_size", "lr", "checkpoint_every")}
        v.update(model=name, steps=args.steps, **PARAMS[name])
        if name == "capacity_vae":
            v["c_steps"] = args.steps
        if name == "beta_vae_dae":
            v["dae"] = {"steps": max(1, 3 * args.steps // 4)}
        if name == "infogan":
            v.pop("lr")  # InfoGAN's rates are d_lr / g_lr
        cfg = {**base, "name": f"zoo_{name}", "runs_dir": args.runs_dir, "vision": v}
        path = Path(args.runs_dir) / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "darla.cli", "vision", "train", str(path), "--no-progress"],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: failed: {r.stderr.strip().splitlines()[-1:]}")
            continue
        s = json.loads((Path(args.runs_dir) / f"zoo_{name}/vision/summary.json").read_text())
        final = {k: round(v[-1], 2) for k, v in s["history"].items() if k != "step"}
        print(f"{name:<14}{time.time() - t0:>7.0f} s  active {s['active_dims']:>2}  {final}", flush=True)


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "zoo_runs.py"))
