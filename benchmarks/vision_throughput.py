"""Vision training throughput (images/s) and achieved FLOP rate as a fraction of this machine's
matmul rate, both measured in the same run.

Roofline baseline: ``torch.mm`` of two N×N float32 matrices (GFLOP/s). A training step's FLOPs
(forward + backward) come from ``torch.utils.flop_counter.FlopCounterMode``; achieved rate =
FLOPs per step × steps/s. On CUDA it also times bf16 autocast and ``torch.compile`` of the nets (``Module.compile``);
on the CPU, Adam's fused kernel (what stage 1 runs there). For stage 1's whole loop on a GPU,
eager vs CUDA-graphed, see ``gpu_stage1.py``.

    python benchmarks/vision_throughput.py [--models beta_vae] [--size 64] [--batch 64] [--steps 30] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from vision.registry import VISION_MODELS
from vision.train import fuse_adam


def matmul_gflops(device: torch.device, n: int, dtype: torch.dtype = torch.float32, reps: int = 10) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_flops(model, x) -> int:
    opts = model.configure_optimizers(1e-4)
    with FlopCounterMode(display=False) as fc:
        model.train_step(x, 0, opts)
    return fc.get_total_flops()


def build(name: str, size: int, latent: int):
    """A registry model at full (default) architecture; models that need data or a DAE get them."""
    extra = {
        "beta_tcvae": {"dataset_size": 100_000},
        "beta_vae_dae": {"dae_kwargs": {"latent_dim": 100}},  # random DAE weights: same FLOPs as a trained one
    }.get(name, {})
    model = VISION_MODELS[name]((3, size, size), latent, **extra)
    if getattr(model, "learns_from", "frames") == "transitions":  # ICF: (s, a, s') rendered by the env
        from envs.transitions import SeekAvoidTransitions

        model.attach_data(SeekAvoidTransitions(size, "vision"), np.random.default_rng(0))
    elif hasattr(model, "attach_data"):
        from envs.registry import get_domain
        from envs.seek_avoid import SeekAvoidGroundTruth

        model.attach_data(SeekAvoidGroundTruth(size, get_domain("seek_avoid", "vision")), np.random.default_rng(0))
    return model


def images_per_s(model, x, steps: int, amp: bool, device: torch.device, opts=None) -> float:
    """Images/s over ``steps`` steps; with ``opts`` None, fresh optimisers and 3 warm-up steps first."""
    cuda = device.type == "cuda"
    if opts is None:
        opts = model.configure_optimizers(1e-4)
        for i in range(3):  # warm-up (and compilation)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                model.train_step(x, i, opts, check_finite=not cuda)
    sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            model.train_step(x, i, opts, check_finite=not cuda)
    sync(device)
    return steps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="beta_vae", help="comma-separated registry names, or all")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cpu-compile", action="store_true", help="on the CPU, also torch.compile the nets (a minute to compile)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds of all variants; medians are printed")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--mm", type=int, default=2048, help="side of the roofline matmul")
    args = ap.parse_args()
    device = torch.device(args.device)
    roof = matmul_gflops(device, args.mm)
    print(f"device {device}, {torch.get_num_threads()} threads; torch.mm {args.mm}² fp32: {roof:,.1f} GFLOP/s (roofline)")
    print(f"{'model':<14}{'variant':<23}{'images/s':>10}{'GFLOP/step':>12}{'GFLOP/s':>10}{'÷ roofline':>12}"
          + ("  ÷ first variant, median (range) over rounds" if args.rounds > 1 else ""))
    names = sorted(VISION_MODELS) if args.models == "all" else args.models.split(",")
    for name in names:
        torch.manual_seed(0)
        model = build(name, args.size, args.latent).to(device)
        x = (torch.rand(args.batch, 3, args.size, args.size, device=device) > 0.5).float()
        flops = step_flops(model, x)
        # (label, bf16 autocast, torch.compile of each child net, channels_last, fused Adam).
        # On the CPU stage 1 runs "fp32+cl+fusedadam" (vision.train.prepare_training).
        variants = [("fp32", False, False, False, False), ("fp32+cl", False, False, True, False)]
        if device.type == "cpu":
            variants.append(("fp32+cl+fusedadam", False, False, True, True))
            if args.cpu_compile:
                variants.append(("fp32+cl+fused+compile", False, True, True, True))
        if device.type == "cuda":
            variants += [
                ("bf16", True, False, False, False), ("bf16+cl", True, False, True, False),
                ("fp32+compile", False, True, False, False), ("bf16+compile", True, True, False, False),
            ]
        compiled: list | None = None
        ips_of: dict[str, list[float]] = {v[0]: [] for v in variants}
        opts_of: dict[str, list[torch.optim.Optimizer]] = {}
        for r in range(args.rounds):  # rounds interleave the variants, in alternating order (a busy machine drifts)
            for label, amp, comp, cl, fused in variants if r % 2 == 0 else variants[::-1]:
                fmt = torch.channels_last if cl else torch.contiguous_format
                model.to(memory_format=fmt)
                x = x.contiguous(memory_format=fmt)
                if comp and not compiled:
                    # Module.compile() compiles each net in place (state_dict keys unchanged), so
                    # step-dependent Python numbers in the loss (capacity C, annealing) don't recompile.
                    for child in model.children():
                        child.compile()
                    compiled = [child._compiled_call_impl for child in model.children()]
                if compiled:  # eager variants run eager in every round
                    for child, impl in zip(model.children(), compiled):
                        child._compiled_call_impl = impl if comp else None
                if label not in opts_of:
                    opts_of[label] = model.configure_optimizers(1e-4)
                    if fused:
                        fuse_adam(opts_of[label])
                    for i in range(3):  # warm-up (and compilation)
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                            model.train_step(x, i, opts_of[label], check_finite=device.type != "cuda")
                ips_of[label].append(images_per_s(model, x, args.steps, amp, device, opts_of[label]))
        base = ips_of[variants[0][0]]
        for label, runs in ips_of.items():
            ips = statistics.median(runs)
            rate = flops / args.batch * ips / 1e9
            gain = [a / b for a, b in zip(runs, base)]
            vs = f"{statistics.median(gain):6.2f} ({min(gain):.2f}–{max(gain):.2f})" if args.rounds > 1 else ""
            print(f"{name:<14}{label:<23}{ips:>10,.0f}{flops / 1e9:>12.2f}{rate:>10,.1f}{rate / roof:>12.2f}  {vs}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "vision_throughput.py"))
