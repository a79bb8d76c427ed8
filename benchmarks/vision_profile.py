"""Where a stage-1 training step spends its time, and how close it runs to two ceilings.

Prints ``torch.profiler``'s top ops (self CPU time) of ``model.train_step`` as stage 1 runs it
(:func:`vision.train.prepare_training`), then, in interleaved rounds, three rates measured in
the same run:

- the step: FLOPs of a step (``FlopCounterMode``, forward + backward) ÷ its time;
- ``torch.mm`` of two N×N float32 matrices (the roofline of ``vision_throughput.py``);
- the conv ceiling: every conv and transposed-conv layer of the model timed alone on its exact
  shapes (forward, grad of input, grad of weight and bias), each in the faster of contiguous and
  channels_last: the best oneDNN does for these layers, with nothing between them. A per-layer
  table also times torch's own (non-oneDNN) kernels for comparison.

Each round gives step ÷ mm and step ÷ conv ceiling; the medians and ranges are printed. Also the
share of the step's FLOPs in its convolutions, and the conv layers' own time inside the step.

    python benchmarks/vision_profile.py [--model beta_vae] [--size 64] [--batch 64] [--rounds 7] [--no-profile]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from vision.train import prepare_training


def matmul_gflops(n: int, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def conv_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    """(name, layer, input shape) of every Conv2d/ConvTranspose2d a forward pass of the loss runs."""
    seen: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: seen.append((name, mod, tuple(inp[0].shape))))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        with torch.no_grad():
            model.loss(x, 0)
    finally:
        for h in hooks:
            h.remove()
    return seen  # a layer run twice (β-VAE-DAE's frozen DAE, on x and on x̂) is in it twice


class LayerBench:
    """One conv layer alone: forward + backward on its exact input shape, in a given memory format."""

    def __init__(self, layer: nn.Module, shape: tuple[int, ...], fmt: torch.memory_format, input_grad: bool, onednn: bool = True) -> None:
        self.onednn = onednn
        self.layer = copy.deepcopy(layer).to(memory_format=fmt).requires_grad_(True)
        self.x = torch.randn(shape).contiguous(memory_format=fmt).requires_grad_(input_grad)
        with torch.no_grad():
            out = self.layer(self.x)
        self.g = torch.randn_like(out)
        with FlopCounterMode(display=False) as fc:
            self()
        self.flops = fc.get_total_flops()

    def __call__(self) -> None:
        with torch.backends.mkldnn.flags(enabled=self.onednn):
            out = self.layer(self.x)
            out.backward(self.g)
        self.layer.zero_grad(set_to_none=True)
        self.x.grad = None


def timed(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="beta_vae")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3, help="steps (and layer reps) per round")
    ap.add_argument("--mm", type=int, default=1024, help="side of the roofline matmul")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--plain-adam", action="store_true",
                    help="the model's optimisers as configure_optimizers builds them, not fused (stage 1 before issue 22)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vision_throughput import (
        build,  # the registry model at full architecture, with any data it needs
    )

    torch.manual_seed(0)
    model = build(args.model, args.size, args.latent)
    opts, fmt, _ = prepare_training(model, torch.device("cpu"), lr=1e-4)
    if args.plain_adam:
        opts = model.configure_optimizers(1e-4)
    x = (torch.rand(args.batch, 3, args.size, args.size) > 0.5).float().contiguous(memory_format=fmt)
    with FlopCounterMode(display=False) as fc:
        model.train_step(x, 0, opts)
    step_flops = fc.get_total_flops()
    print(f"{args.model} {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads; "
          f"{step_flops / 1e9:.2f} GFLOP a step; optimiser {type(opts[0]).__name__} "
          f"fused={opts[0].param_groups[0].get('fused')}")

    step = 1

    def run_step() -> None:
        nonlocal step
        model.train_step(x, step, opts)
        step += 1

    for _ in range(2):
        run_step()
    if not args.no_profile:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps * 2):
                run_step()
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\ntop ops by self CPU time ({args.steps * 2} steps):")
        for e in events[: args.top]:
            print(f"  {e.key:<34}{100 * e.self_cpu_time_total / total:6.1f}%  {e.count // (args.steps * 2):4d} calls/step")

    # The conv ceiling: each layer alone, in whichever memory format is faster for it.
    layers = conv_layers(model, x)
    first = {id(layers[0][1])} if layers else set()
    # Per layer: oneDNN in contiguous and in channels_last (the ceiling: the faster of the two),
    # and torch's own kernels (oneDNN off) in contiguous, for comparison only.
    variants = [("oneDNN nchw", torch.contiguous_format, True), ("oneDNN nhwc", torch.channels_last, True),
                ("native nchw", torch.contiguous_format, False)]
    benches = []
    for _name, layer, shape in layers:
        row = [LayerBench(layer, shape, f, input_grad=id(layer) not in first, onednn=on) for _, f, on in variants]
        for b in row:
            b()
        benches.append(row)
    conv_flops = sum(row[0].flops for row in benches)
    layer_times: list[list[list[float]]] = [[[] for _ in variants] for _ in benches]

    r_mm, r_ceil, rates = [], [], {"step": [], "mm": [], "ceil": []}
    for _ in range(args.rounds):
        mm = matmul_gflops(args.mm)
        t_layers = 0.0
        for i, row in enumerate(benches):
            ts = [timed(b, args.steps) for b in row]
            for j, t in enumerate(ts):
                layer_times[i][j].append(t)
            t_layers += min(t for t, (_, _, on) in zip(ts, variants) if on)
        t_step = timed(run_step, args.steps)
        ceil = conv_flops / t_layers / 1e9
        rate = step_flops / t_step / 1e9
        rates["step"].append(rate)
        rates["mm"].append(mm)
        rates["ceil"].append(ceil)
        r_mm.append(rate / mm)
        r_ceil.append(rate / ceil)

    def med(v: list[float]) -> str:
        return f"{statistics.median(v):.2f} (range {min(v):.2f}–{max(v):.2f})"

    print(f"\nconv layers: {len(benches)}, {conv_flops / step_flops:.0%} of the step's FLOPs; "
          f"{args.rounds} rounds × {args.steps} reps")
    print(f"  step            {statistics.median(rates['step']):8.1f} GFLOP/s  "
          f"({args.batch * statistics.median(rates['step']) * 1e9 / step_flops:,.0f} images/s)")
    print(f"  torch.mm {args.mm}²  {statistics.median(rates['mm']):8.1f} GFLOP/s")
    print(f"  conv ceiling    {statistics.median(rates['ceil']):8.1f} GFLOP/s  (its layers alone, best format each)")
    print(f"step ÷ torch.mm:      {med(r_mm)}")
    print(f"step ÷ conv ceiling:  {med(r_ceil)}")
    print(f"conv ceiling ÷ torch.mm: {med([c / m for c, m in zip(rates['ceil'], rates['mm'])])}")
    mm = statistics.median(rates["mm"])
    print("\nper layer (forward + backward alone; median ms over the rounds; best GFLOP/s of oneDNN ÷ torch.mm):")
    print(f"  {'layer':<14}{'input':<18}{'MFLOP':>7}" + "".join(f"{v[0]:>13}" for v in variants) + f"{'GFLOP/s':>9}{'÷ mm':>6}")
    for (name, _layer, shape), row, times in zip(layers, benches, layer_times):
        ms = [1e3 * statistics.median(t) for t in times]
        best = min(m for m, (_, _, on) in zip(ms, variants) if on)
        rate = row[0].flops / best / 1e6
        print(f"  {name:<14}{'x'.join(map(str, shape[1:])):<18}{row[0].flops / 1e6:>7.0f}" + "".join(f"{m:>13.2f}" for m in ms)
              + f"{rate:>9.1f}{rate / mm:>6.2f}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "vision_profile.py"))
