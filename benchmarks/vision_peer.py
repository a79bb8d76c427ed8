"""darla's β-VAE training step ÷ a textbook PyTorch step on the same architecture, same process.

The reference is written here, not imported: the Burgess et al. (2018) net as tutorials and
peer repositories spell it (``nn.Sequential`` of ``Conv2d``/``ConvTranspose2d``, 4×4 kernels,
stride 2, ReLU, FC 256-256, contiguous tensors) and a plain loop: forward, Bernoulli
reconstruction + β·KL, ``zero_grad``, ``backward``, ``torch.optim.Adam`` with its defaults.
darla's side is ``model.train_step`` after :func:`vision.train.prepare_training`, exactly as
stage 1 runs it (memory format and optimiser options included).

Both take the same batch, the same channel stack (``vision.nets.default_channels`` for the size:
32-32-64-64 at 64 px, 32-32-64 at 32 px) and the same FLOPs. Rounds alternate which side goes
first; each round times ``--steps`` steps of each, and the ratio of a round is
reference time ÷ darla time (> 1: darla is faster). Prints the median ratio and its range.

    python benchmarks/vision_peer.py [--size 64] [--batch 64] [--rounds 15] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from vision.nets import default_channels
from vision.train import prepare_training
from vision.vae import BetaVAE


def reference_net(c: int, side: int, channels: tuple[int, ...], latent: int, hidden: int = 256) -> tuple[nn.Module, nn.Module]:
    """The textbook encoder/decoder: convs down, FCs, FCs up, transposed convs back."""
    enc: list[nn.Module] = []
    prev = c
    for ch in channels:
        enc += [nn.Conv2d(prev, ch, 4, 2, 1), nn.ReLU()]
        prev = ch
    s = side >> len(channels)
    encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(prev * s * s, hidden), nn.ReLU(),
                            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent))
    dec: list[nn.Module] = [nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                            nn.Linear(hidden, prev * s * s), nn.ReLU(), nn.Unflatten(1, (prev, s, s))]
    outs = list(channels[::-1][1:]) + [c]
    for i, cout in enumerate(outs):
        dec.append(nn.ConvTranspose2d(prev, cout, 4, 2, 1))
        if i < len(outs) - 1:
            dec.append(nn.ReLU())
        prev = cout
    return encoder, nn.Sequential(*dec)


def reference_step(encoder: nn.Module, decoder: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, beta: float) -> float:
    mu, logvar = encoder(x).chunk(2, dim=1)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = F.binary_cross_entropy_with_logits(decoder(z), x, reduction="sum") / len(x)
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(1).mean()
    loss = recon + beta * kl
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--steps", type=int, default=3, help="steps of each side per round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--verbose", action="store_true", help="print every round")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    obs = (3, args.size, args.size)
    channels = default_channels(obs)
    torch.manual_seed(0)
    x = (torch.rand(args.batch, *obs) > 0.5).float()

    model = BetaVAE(obs, args.latent, beta=4.0)
    opts, fmt, _ = prepare_training(model, device, lr=1e-4)
    x_darla = x.contiguous(memory_format=fmt)
    encoder, decoder = reference_net(3, args.size, channels, args.latent)
    ref_opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-4)
    n_darla = sum(p.numel() for p in model.parameters())
    n_ref = sum(p.numel() for p in [*encoder.parameters(), *decoder.parameters()])
    if n_darla != n_ref:
        raise SystemExit(f"architectures differ: darla {n_darla:,} parameters, reference {n_ref:,}")

    step = 0

    def run_darla() -> None:
        nonlocal step
        for _ in range(args.steps):
            model.train_step(x_darla, step, opts)
            step += 1

    def run_ref() -> None:
        for _ in range(args.steps):
            reference_step(encoder, decoder, ref_opt, x, 4.0)

    run_darla()  # warm-up: allocator, oneDNN primitive caches
    run_ref()
    ratios, t_darla, t_ref = [], [], []
    for r in range(args.rounds):
        order = [("darla", run_darla), ("ref", run_ref)]
        times = {}
        for name, fn in order if r % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            fn()
            times[name] = (time.perf_counter() - t0) / args.steps
        t_darla.append(times["darla"])
        t_ref.append(times["ref"])
        ratios.append(times["ref"] / times["darla"])
    print(f"{args.size} px, batch {args.batch}, channels {list(channels)}, {n_darla:,} parameters, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds × {args.steps} steps")
    print(f"darla     {1e3 * statistics.median(t_darla):8.1f} ms/step  ({args.batch / statistics.median(t_darla):,.0f} images/s)")
    print(f"reference {1e3 * statistics.median(t_ref):8.1f} ms/step  ({args.batch / statistics.median(t_ref):,.0f} images/s)")
    if args.verbose:
        for r, (a, b) in enumerate(zip(t_darla, t_ref)):
            print(f"  round {r:2d}: darla {1e3 * a:8.1f} ms, reference {1e3 * b:8.1f} ms, ratio {b / a:.2f}")
    print(f"reference ÷ darla: median {statistics.median(ratios):.2f}× (range {min(ratios):.2f}–{max(ratios):.2f})")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "vision_peer.py"))
