"""Which factors does each stage-1 encoder carry, and after how many steps?

A policy on frozen latents can only use what the latents encode. This script trains a preset's
encoders (its ``vision`` model and every method with a trained encoder) on the preset's frames,
exactly as stage 1 does, and at each of ``--at`` steps prints, per ground-truth factor, the test
accuracy of DCI's classifier from the latent means to that factor (``informativeness_test_per_factor``)
next to chance (1 / the factor's size). Training resumes between points, so the last column is
the model stage 1 would hand over at that budget. A second row per point, ``MLP probe``, is the
test accuracy of a 256-unit MLP trained on 4,000 fresh codes and tested on 2,000
(:mod:`vision.metrics.probe`): DCI's small-sample trees understate a factor spread over several
latents, which a policy's MLP still reads.
Add ``-o key=value`` overrides (as the CLI's) to try a larger frame or a wider DAE without
writing a config.

    python benchmarks/perception_curve.py configs/seek_avoid_cpu.yaml --at 2500 5000 10000 20000
    python benchmarks/perception_curve.py configs/seek_avoid_cpu.yaml --methods vae_beta1 \\
        --at 10000 40000 -o env.size=64 -o vision.batch_size=32
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from darla.config import load_config
from darla.stages.vision import train_settings, vision_frames, vision_ground_truth
from envs.registry import get_domain
from vision.metrics import score
from vision.metrics.dci import accuracy_by_factor
from vision.metrics.probe import probe_for_seed
from vision.registry import get_model_class, load_checkpoint, make_model, model_kwargs
from vision.train import train_vision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("config")
    ap.add_argument("--at", type=int, nargs="+", default=[2500, 5000, 10000], help="steps at which to score")
    ap.add_argument("--methods", nargs="+", help="methods to probe (default: all with a trained encoder)")
    ap.add_argument("-o", "--set", "--override", dest="override", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default="runs/perception_curve", help="checkpoints (resumable) and curve.json")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--settings", choices=["fast", "full"], default="fast", help="metric sample sizes")
    ap.add_argument("--probe-only", action="store_true",
                    help="skip MIG and DCI (their trees take minutes per point on a CPU); print the MLP probe only")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.override)
    v = cfg.vision
    out = Path(args.out) / cfg.name
    dom = get_domain(cfg.env.name, cfg.env.domains.vision)
    t0 = time.time()
    frames = vision_frames(cfg, dom, print)  # stage 1's frames (vision.episode_steps included)
    data = vision_ground_truth(cfg, dom)
    names, sizes = list(data.factor_names), np.asarray(data.factor_sizes)
    print(f"{len(frames)} frames {frames.shape[1:]} in {time.time() - t0:.0f} s; factors {names}")
    obs_shape = (frames.shape[3], frames.shape[1], frames.shape[2])

    # method → (registry name, params, lr), as stage 1 trains them: the vision model once, under
    # the name of the first method that sees through it; every other frozen encoder with vision's
    # lr only when it is the same model (stage 1's rule in _train_extra_encoder).
    vision_method = next((m for m, mc in cfg.methods.items() if mc.encoder == "vision"), "vision")
    specs: dict[str, tuple[str, dict, float | None]] = {vision_method: (v.model, dict(v.params), v.lr)}
    for m, mc in cfg.methods.items():
        if mc.encoder not in ("pixels", "vision"):
            same = get_model_class(mc.encoder).uses_lr and mc.encoder == v.model
            specs[m] = (mc.encoder, dict(mc.params), v.lr if same else None)
    chosen = args.methods or list(specs)
    unknown = [m for m in chosen if m not in specs]
    if unknown:
        raise SystemExit(f"no trained encoder for {unknown}; choose from {list(specs)}")

    def settings(steps: int, lr: float | None):
        return train_settings(cfg, steps, lr, progress=False)

    curve: dict[str, list[dict]] = {}
    print("chance      " + " ".join(f"{n[:9]:>9}" for n in names) + f"  {'MIG':>5} {'DCI':>5}")
    print("            " + " ".join(f"{1 / s:9.2f}" for s in sizes))
    for method in chosen:
        model_name, params, lr = specs[method]
        cls = get_model_class(model_name)
        kwargs = model_kwargs(cls, params, v.n_frames)
        if getattr(cls, "requires", None) == "dae" and not kwargs.get("dae_checkpoint"):
            dae_dir = out / "pretrained_dae"
            torch.manual_seed(cfg.seed)
            dae = get_model_class("dae")(obs_shape, **v.dae.params)
            t = time.time()
            train_vision(dae, frames, settings(v.dae.steps, v.dae.lr), dae_dir, resume=True)
            print(f"[{method}] DAE pretrained ({v.dae.steps} steps) in {time.time() - t:.0f} s")
            kwargs["dae_checkpoint"] = str(dae_dir / "model.pt")
        torch.manual_seed(cfg.seed)
        model = make_model(cls, obs_shape, latent_dim=v.latent_dim, **kwargs)
        curve[method] = []
        for steps in sorted(args.at):
            t = time.time()
            res = train_vision(model, frames, settings(steps, lr), out / method, resume=True)
            train_s = time.time() - t
            if res.resumed_from > steps:  # it would score the later model under this point's label
                raise SystemExit(f"{out / method} holds a model trained to step {res.resumed_from}, past the point "
                                 f"--at {steps}: give points from {res.resumed_from} on, or a new --out")
            # Scored as stage 1 scores: the saved model.pt, loaded (the in-memory model is in
            # channels_last on the CPU, whose float differences move DCI's accuracies by ~0.01).
            saved = load_checkpoint(res.model_path)
            if args.probe_only:
                m = {"mig": {"mig": float("nan")}, "dci": {"dci": float("nan")}}
                row: dict[str, float] = {}
            else:
                m = score(data, saved.represent, np.random.default_rng(cfg.seed), ["mig", "dci"], args.settings)
                row = {names[j]: a for j, a in accuracy_by_factor(m["dci"]).items()}
            probe = probe_for_seed(data, saved.represent, cfg.seed)
            point = {
                "steps": steps, "train_s": round(train_s, 1), "mig": m["mig"]["mig"], "dci": m["dci"]["dci"],
                "informativeness_test_per_factor": row,
                "probe_test_per_factor": probe,
                "loss": {k: vals[-1] for k, vals in res.history.items() if vals and k != "step"},
            }
            curve[method].append(point)
            if not args.probe_only:
                cells = " ".join(f"{row.get(n, float('nan')):9.2f}" for n in names)
                print(f"{method[:9]:>9} {steps:>6}  {cells}  {point['mig']:5.2f} {point['dci']:5.2f}  ({train_s:.0f} s)", flush=True)
            cells = " ".join(f"{probe[n]:9.2f}" for n in names)
            label = f"{method[:9]:>9} {steps:>6}" if args.probe_only else f"{'MLP probe':>16}"
            print(f"{label}  {cells}" + (f"  ({train_s:.0f} s, MLP probe)" if args.probe_only else ""), flush=True)
            out.mkdir(parents=True, exist_ok=True)
            (out / "curve.json").write_text(json.dumps({"config": args.config, "overrides": args.override, "curve": curve}, indent=1))
    print(f"total {time.time() - t0:.0f} s; curve in {out / 'curve.json'}")


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "perception_curve.py"))
