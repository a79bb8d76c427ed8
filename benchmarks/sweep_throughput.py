"""Sweep wall time: local executor with 2 workers ÷ 1 worker, and Ray's overhead per run.

A 2×2×2 tiny sweep (vision.beta × agent.hyperparams.gamma × seeds: 8 runs, 4 vision models) at
32 px, run from scratch in a fresh directory by each executor. The baseline, measured in the same
run, is the local executor with one worker (in this process). The 2-worker ratio is what process
parallelism buys on this machine (ideal: 2.0 on ≥ 2 free cores; spawn and import cost come off
it), so the script also prints the machine's own ceiling, measured in the same run on pure-Python
work in as many processes (a shared or busy machine gives less than ×N). Ray's overhead per job = (Ray wall − local wall, both at 2 workers) ÷ jobs (runs + vision
models), Ray's start-up included; skipped when Ray is not installed.

    python benchmarks/sweep_throughput.py [--workers 2] [--vision-steps 30] [--timesteps 256] [--keep DIR]
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from darla.sweep import load_sweep, run_sweep  # noqa: E402

BASE = {
    "name": "bench", "seed": 0, "device": "cpu",
    "env": {"name": "seek_avoid", "size": 32, "max_steps": 20},
    "vision": {"model": "beta_vae", "latent_dim": 4, "beta": 4.0, "n_frames": 256, "steps": 30, "batch_size": 32,
               "lr": 1.0e-3, "checkpoint_every": 10, "channels": [8, 8, 16, 16], "hidden": 32},
    "agent": {"algo": "ppo", "total_timesteps": 256, "n_envs": 2, "seeds": [0], "checkpoint_every": 128,
              "policy_kwargs": {"net_arch": [16]}, "hyperparams": {"n_steps": 64, "batch_size": 64, "n_epochs": 1}},
    "transfer": {"n_episodes": 3},
}


def sweep_file(root: Path, vision_steps: int, timesteps: int, name: str) -> Path:
    base = copy.deepcopy(BASE)
    base["vision"]["steps"] = vision_steps
    base["agent"]["total_timesteps"] = timesteps
    (root / "base.yaml").write_text(yaml.safe_dump(base, sort_keys=False))
    body = {"base": "base.yaml", "name": name, "sweep_dir": name,
            "grid": {"vision.beta": [1.0, 4.0], "agent.hyperparams.gamma": [0.9, 0.99]}, "seeds": [0, 1],
            "resources": {"num_cpus": 1}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def timed(path: Path, executor: str, workers: int) -> tuple[float, dict]:
    sweep = load_sweep(path)
    t0 = time.perf_counter()
    state = run_sweep(sweep, executor=executor, workers=workers, log=lambda m: None)
    wall = time.perf_counter() - t0
    bad = [r["name"] for r in state["runs"] if r["status"] != "complete"]
    if bad:
        raise SystemExit(f"{executor}: runs failed: {bad}; see {sweep.sweep_dir}/sweep.json")
    return wall, state


def _burn(n: int) -> float:
    s = 0
    for i in range(n):
        s += i * i
    return float(s)


def machine_speedup(workers: int, n: int = 4_000_000) -> float:
    """What ``workers`` spawned processes buy on pure-Python work right now (other load included):
    the ceiling for the sweep's ratio on this machine at this moment."""
    import multiprocessing

    jobs = [n] * (2 * workers)
    t0 = time.perf_counter()
    for j in jobs:
        _burn(j)
    seq = time.perf_counter() - t0
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_burn, [1000] * workers)  # start the processes outside the timing
        t0 = time.perf_counter()
        pool.map(_burn, jobs, chunksize=1)
        par = time.perf_counter() - t0
    return seq / par


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--vision-steps", type=int, default=30)
    ap.add_argument("--timesteps", type=int, default=256)
    ap.add_argument("--keep", type=Path, default=None, help="keep the sweep directories here")
    args = ap.parse_args()

    ceiling = machine_speedup(args.workers)
    root = Path(tempfile.mkdtemp(prefix="sweep_bench_")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        results = {}
        for label, executor, workers in (("local×1", "local", 1), (f"local×{args.workers}", "local", args.workers)):
            path = sweep_file(root, args.vision_steps, args.timesteps, label.replace("×", "_x"))
            results[label], state = timed(path, executor, workers)
        n_runs, n_vision = len(state["runs"]), len(state["vision"])
        jobs = [r.get("wall_time_s", 0.0) for r in state["runs"]] + [v.get("wall_time_s", 0.0) for v in state["vision"].values()]
        base = results["local×1"]
        par = results[f"local×{args.workers}"]
        print(f"sweep: 2×2×2 = {n_runs} runs, {n_vision} vision models, 32 px, vision {args.vision_steps} steps, "
              f"PPO {args.timesteps} steps per run")
        print(f"local, 1 worker (baseline):  {base:7.1f} s  ({base / n_runs:.1f} s per run)")
        print(f"local, {args.workers} workers:           {par:7.1f} s  speed-up ×{base / par:.2f} (ideal ×{args.workers}); "
              f"Σ job wall {sum(jobs):.1f} s")
        print(f"  machine ceiling now: ×{ceiling:.2f} with {args.workers} processes on pure-Python work "
              f"(other users' load included); sweep speed-up ÷ ceiling = {base / par / ceiling:.2f}")
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray: not installed (pip install 'darla[ray]'); no Ray overhead measured")
            return
        path = sweep_file(root, args.vision_steps, args.timesteps, "ray")
        t0 = time.perf_counter()
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        start = time.perf_counter() - t0
        try:
            ray_wall, _ = timed(path, "ray", args.workers)
        finally:
            ray.shutdown()
        total = ray_wall + start
        per_job = (total - par) / (n_runs + n_vision)
        print(f"ray, {args.workers} CPUs:              {total:7.1f} s  (ray.init {start:.1f} s); ×{par / total:.2f} of local×{args.workers}; "
              f"overhead {per_job:+.2f} s per job ({n_runs + n_vision} jobs), {(total - par) / n_runs:+.2f} s per run")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "sweep_throughput.py"))
