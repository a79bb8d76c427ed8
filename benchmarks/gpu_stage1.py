"""Stage 1's training loop on a GPU: images/s of eager vs CUDA-graphed steps, one short run.

For each model (β-VAE, β-VAE-DAE with a random frozen DAE: the same FLOPs as a trained one) and
each variant it runs :func:`vision.train.train_vision` itself (batch gather, logging every
``--log-every`` steps, finiteness checks, no checkpoint until the end) on random 64 px frames held
on the GPU: ``--warm`` steps untimed, then a second call resumes from their checkpoint for
``--steps`` more, and its own images/s (``TrainResult.images_per_s``, which includes that call's
CUDA-graph capture or recompilation) is the number. Variants:

- ``eager``: the default step;
- ``graph``: ``cuda_graph=True`` (vision.graphed: the whole step replayed as one CUDA graph);
- ``compile``, ``compile+graph``: the same with ``torch.compile`` of the nets (``--variants``).

The ``torch.mm`` rate of the device is printed as a reference. Before timing, it runs the CUDA
tests of the graphed step (``tests/vision/test_speed.py``) unless ``--no-tests``. Everything
printed also goes to ``OUT/gpu_stage1.json`` and ``OUT/gpu_stage1.txt`` (``--out``, default
``$OUT`` or ``runs/gpu_stage1``). On a machine without CUDA the graphed variants are reported as
skipped and the eager ones run on the CPU (for checking the script at ``--size 16 --steps 4``).

    python benchmarks/gpu_stage1.py [--out DIR] [--steps 3000] [--batch 64] [--variants eager,graph] [--no-tests]

About 2-4 minutes on an H100-class GPU with the defaults (two models × two variants × 3,000 steps,
plus the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from vision.registry import VISION_MODELS
from vision.train import TrainSettings, train_vision

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"eager": (False, False), "graph": (False, True), "compile": (True, False), "compile+graph": (True, True)}


def build(name: str, size: int, latent: int):
    kw = {"dae_kwargs": {"latent_dim": 100}} if name == "beta_vae_dae" else {}
    torch.manual_seed(0)
    return VISION_MODELS[name]((3, size, size), latent, **kw)


def mm_gflops(device: torch.device, n: int = 4096, reps: int = 20) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "runs/gpu_stage1")
    ap.add_argument("--models", default="beta_vae,beta_vae_dae")
    ap.add_argument("--variants", default="eager,graph", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, nargs="+", default=[64])
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--steps", type=int, default=3000, help="timed steps per run")
    ap.add_argument("--warm", type=int, default=100, help="untimed steps before them (a separate call it resumes from)")
    ap.add_argument("--frames", type=int, default=8192)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--no-tests", action="store_true")
    ap.add_argument("--mm", type=int, default=4096)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    result: dict = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "size": args.size, "steps": args.steps, "log_every": args.log_every, "runs": [],
    }
    if not args.no_tests:
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/vision/test_speed.py")],
            cwd=ROOT, capture_output=True, text=True,
        )
        (out / "tests.txt").write_text(tests.stdout + tests.stderr)
        result["tests"] = {"returncode": tests.returncode, "summary": (tests.stdout.strip().splitlines() or [""])[-1]}
        say(f"tests/vision/test_speed.py: {result['tests']['summary']} (exit {tests.returncode}; output in tests.txt)")
    result["mm_gflops"] = mm_gflops(device, args.mm)
    say(f"{result['device']}, torch {torch.__version__}; torch.mm {args.mm}² fp32: {result['mm_gflops']:,.0f} GFLOP/s")
    frames = np.random.default_rng(0).integers(0, 256, (args.frames, args.size, args.size, 3), dtype=np.uint8)
    say(f"{'model':<14}{'batch':>6}  {'variant':<15}{'images/s':>10}{'÷ eager':>9}  note")
    for name in args.models.split(","):
        for batch in args.batch:
            eager_ips = None
            for variant in args.variants.split(","):
                compile_, graph = VARIANTS[variant]
                run = {"model": name, "batch": batch, "variant": variant}
                if graph and not cuda:
                    run["skipped"] = "no CUDA device"
                    result["runs"].append(run)
                    say(f"{name:<14}{batch:>6}  {variant:<15}{'-':>10}{'':>9}  skipped: no CUDA device")
                    continue
                settings = TrainSettings(
                    steps=args.warm, batch_size=batch, lr=1e-4, checkpoint_every=10**9, log_every=args.log_every,
                    device=str(device), compile=compile_, cuda_graph=graph, seed=0, progress=False,
                )
                run_dir = out / "runs" / f"{name}-{batch}-{variant}"
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    # Warm-up run (compilation, cuDNN/cuBLAS set-up), then the timed run resumes
                    # from its checkpoint: a fresh model object, a fresh capture, the loop's own images/s.
                    train_vision(build(name, args.size, args.latent), frames, settings, run_dir, resume=False)
                    t0 = time.perf_counter()
                    res = train_vision(build(name, args.size, args.latent), frames,
                                       replace(settings, steps=args.warm + args.steps), run_dir)
                    wall = time.perf_counter() - t0
                note = "; ".join(str(w.message) for w in caught if "cuda_graph" in str(w.message) or "CUDA graph" in str(w.message))
                run.update(images_per_s=res.images_per_s, wall_s=wall, final_loss=res.history["loss"][-1], note=note)
                if variant == "eager":
                    eager_ips = res.images_per_s
                ratio = f"{res.images_per_s / eager_ips:8.2f}×" if eager_ips else f"{'':>9}"
                run["vs_eager"] = res.images_per_s / eager_ips if eager_ips else None
                result["runs"].append(run)
                say(f"{name:<14}{batch:>6}  {variant:<15}{res.images_per_s:>10,.0f}{ratio}  {note}")
    (out / "gpu_stage1.json").write_text(json.dumps(result, indent=2))
    (out / "gpu_stage1.txt").write_text("\n".join(lines) + "\n")
    return result


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "gpu_stage1.py"))
