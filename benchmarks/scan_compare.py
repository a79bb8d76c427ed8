"""SCAN vs SCAN_R vs SCAN on an entangled (β = 1) vision model, on seek-avoid scene frames.

The comparison of Higgins et al. (2018, table 1): the same words grounded (a) by SCAN in a
β-VAE's latents, (b) by SCAN_R (reverse KL: mode-seeking, so unnamed attributes collapse and
diversity suffers), (c) by SCAN in a β = 1 VAE trained on the same frames (entangled latents:
accuracy suffers, most of all for held-out and recombined concepts). Everything runs through
the pipeline's own code: ``darla vision`` trains the β-VAE, the scan stage trains the β = 1
model into ``scan/entangled_vision/`` and the three SCANs, and one factor classifier, trained on
ground-truth renders only, scores every model with the same evaluation seed.

    python benchmarks/scan_compare.py                         # full size (GPU: tens of minutes)
    python benchmarks/scan_compare.py --steps 30 --size 32 --frames 256 --scan-steps 30 --tiny-eval

Prints an accuracy/diversity table (train / held-out / recombined concepts, and img2sym) and
leaves the run in ``RUNS_DIR/scan_compare`` (its report section: ``darla.report.scan``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from darla.config import config_from_dict  # noqa: E402
from darla.pipeline import run_pipeline  # noqa: E402
from darla.report.run import format_table  # noqa: E402
from darla.stages.scan import stage_scan  # noqa: E402

GROUPS = ("train", "held_out", "recombined")


def build_config(args: argparse.Namespace) -> dict:
    """configs/quick.yaml's env and vision, resized by the flags, plus a scan section with both ablations."""
    base = yaml.safe_load((REPO / "configs/quick.yaml").read_text())
    vision = {k: base["vision"][k] for k in ("model", "latent_dim", "likelihood", "batch_size", "lr")}
    vision.update(
        beta=args.beta, latent_dim=args.latents, steps=args.steps, n_frames=args.frames,
        batch_size=min(vision["batch_size"], args.frames), checkpoint_every=max(1, min(5000, args.steps)),
    )
    scan = {
        "enabled": True, "compare": ["reverse_kl", "entangled"], "steps": args.scan_steps,
        "recombine_steps": args.recombine_steps, "lr": args.scan_lr,
    }
    if args.tiny_eval:  # a mechanics check: few concepts, few samples, a small judge
        scan.update(n_concepts=20, images_per_concept=3, eval_samples=4, eval_concepts=3, eval_img2sym=40, judge_renders=300)
    return {
        "name": "scan_compare", "seed": args.seed, "device": args.device, "runs_dir": args.runs_dir,
        # Short episodes: more distinct scenes among the random-policy frames, which SCAN's words name.
        "env": {**base["env"], "size": args.size, "max_steps": args.max_steps},
        "vision": vision, "scan": scan,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10_000, help="vision steps (β-VAE and the β = 1 VAE alike)")
    ap.add_argument("--size", type=int, default=64, help="frame side in pixels")
    ap.add_argument("--frames", type=int, default=8000, help="random-policy frames for both vision models")
    ap.add_argument("--max-steps", type=int, default=20, help="episode length while collecting frames")
    ap.add_argument("--latents", type=int, default=10)
    ap.add_argument("--beta", type=float, default=4.0, help="β of the disentangled vision model")
    ap.add_argument("--scan-steps", type=int, default=10_000)
    ap.add_argument("--recombine-steps", type=int, default=3000)
    ap.add_argument("--scan-lr", type=float, default=1e-3,
                    help="SCAN's Adam rate (the paper's 1e-4 needs far more steps than a benchmark should take)")
    ap.add_argument("--tiny-eval", action="store_true", help="few concepts and samples: check the mechanics only")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--force", action="store_true", help="start the run over")
    args = ap.parse_args()

    cfg = config_from_dict(build_config(args), "scan_compare (flags)")
    t0 = time.time()
    run = run_pipeline(cfg, force=args.force, progress=False, stages=("vision",))
    t_vision = time.time() - t0
    t0 = time.time()
    stage_scan(cfg, run, progress=False)
    t_scan = time.time() - t0

    res = json.loads(run.path("scan", "results.json").read_text())
    header = ("model", *(f"{g.replace('_', '-')} acc ↑ / div ↓" for g in GROUPS), "img2sym acc ↑")
    rows = []
    for name in res["variant_order"]:
        v = res["variants"][name]
        m = v["metrics"]
        rows.append((v["label"], *(f"{m[f'scan/{g}/accuracy']:.3f} / {m[f'scan/{g}/diversity']:.3f}" for g in GROUPS),
                     f"{m['scan/img2sym/accuracy']:.3f}"))
    kl = json.loads((run.vision_dir() / "summary.json").read_text())
    print(f"\nseek_avoid {args.size} px, {args.frames} frames; vision {args.steps} steps (β = {args.beta}: "
          f"{kl['active_dims']} active latents); SCAN {args.scan_steps} + {args.recombine_steps} recombinator steps; "
          f"{len(res['vocabulary']['words'])} words; concepts per group scored: "
          f"{int(res['variants']['scan']['metrics']['scan/train/n_concepts'])}")
    print(format_table(rows, header))
    print(f"\nwall time: vision {t_vision:.0f} s, scan stage (β = 1 model + 3 SCANs + judge + pictures) {t_scan:.0f} s")
    print(f"run: {run.root}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "scan_compare.py"))
