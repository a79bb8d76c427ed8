"""``darla`` command line: ``darla pipeline|vision|agent|transfer|report|sweep|envs ...``.

Each subcommand's parser names its function (``set_defaults(func=...)``); a command group given
without its subcommand prints its help. Failures the user can act on are one line, no traceback:
a :class:`~darla.errors.UserError` exits with its own status (config and usage errors 2, naming
the file and the key or the argument; a run-dir or sweep error 1); the lower layers' expected
failures (a corrupted artifact, a mismatched checkpoint, a missing file, a full disk) exit 1.
An interrupted run (Ctrl-C, kill) is continued by running the same command again.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from darla.config import (
    SCAN_ABLATIONS,
    Config,
    ConfigError,
    load_config,
    load_yaml,
    register_external_env,
)
from darla.errors import UserError
from darla.stages import ALL_STAGES, upstream


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, unless the help already names one; flags
    (store_true) and options without a default say nothing more."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text or default is None or default is False or default == argparse.SUPPRESS or default == []
            or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


_NO_PROGRESS_HELP = (
    "no progress output at all. Otherwise: a live bar on a terminal; when stdout/stderr is not a terminal "
    "(a log file, a batch job), one line every 30 s instead"
)


def _config_args(p: argparse.ArgumentParser, update: bool = True) -> None:
    p.add_argument("config", help="YAML config file (see configs/, e.g. configs/quick.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key, e.g. --set vision.beta=4.0 (repeatable)")
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default: <runs_dir>/<name> from the config)")
    p.add_argument("--force", action="store_true",
                   help="discard this run's artifacts and start over (only in a directory darla made for a run)")
    if update:
        p.add_argument("--update", action="store_true",
                       help="accept a changed config that leaves stage 1 alone: keep stage 1 and the policies it leaves alone, re-run the rest of the stages it touches")
    p.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)


DESCRIPTION = """\
DARLA (Higgins et al. 2017): learn to see (a beta-VAE on frames of a random policy), learn to act
(RL on its frozen latents in the source domain), transfer zero-shot to held-out target domains.

  darla pipeline configs/quick.yaml      all three stages and the report, at CPU-sized settings
  darla envs                             the environments, their factors and domains
  darla report runs/quick                rewrite a run's report.html
  darla <command> --help                 what a command does and its options

An interrupted command continues from its last checkpoint when run again.
"""


class _SubParsers(argparse._SubParsersAction):
    """A subcommand's one-line help is also the description its own --help opens with."""

    def add_parser(self, name: str, **kw: Any) -> argparse.ArgumentParser:
        if kw.get("help") and "description" not in kw:
            kw["description"] = kw["help"][0].upper() + kw["help"][1:] + "."
        return super().add_parser(name, **kw)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Help)
        super().__init__(*args, **kw)
        self.register("action", "parsers", _SubParsers)


def build_parser() -> argparse.ArgumentParser:
    import darla

    p = _Parser(prog="darla", description=DESCRIPTION)
    p.add_argument("--version", action="version", version=f"darla {darla.__version__}")
    p.set_defaults(func=_help_of(p))  # darla alone: its help, which lists the commands
    sub = p.add_subparsers(dest="cmd", metavar="<command>", title="commands")

    pp = sub.add_parser("pipeline", help="run (or continue) all three stages and the report")
    _config_args(pp)
    pp.set_defaults(func=partial(_stages_cmd, stages=ALL_STAGES))

    pv = sub.add_parser("vision", help="stage 1 alone, and tools for vision checkpoints")
    vsub = pv.add_subparsers(dest="vcmd", metavar="<command>", title="commands")
    pv.set_defaults(func=_help_of(pv))  # a command group without its subcommand: its help
    vt = vsub.add_parser("train", help="train the vision model of CONFIG (stage 1 only)")
    _config_args(vt, update=False)  # --update keeps stage 1: nothing left for this command to do
    vt.set_defaults(func=partial(_stages_cmd, stages=upstream("vision")))
    vtr = vsub.add_parser("traverse", help="write the latent traversal grid of a checkpoint")
    vtr.add_argument("checkpoint", type=Path, help="a vision model.pt (e.g. RUN_DIR/vision/model.pt)")
    vtr.add_argument("--env", default="seek_avoid", help="env whose reset frame (at the checkpoint's image size) is traversed around")
    vtr.add_argument("--out", type=Path, default=None, help="PNG path (default: beside the checkpoint)")
    vtr.add_argument("--seed", type=int, default=0, help="reset seed of the reference frame")
    vtr.set_defaults(func=_cmd_traverse)
    vs = vsub.add_parser("score", help="disentanglement metrics of a checkpoint on ground-truth data")
    vs.add_argument("checkpoint", type=Path, help="a vision model.pt (e.g. RUN_DIR/vision/model.pt)")
    vs.add_argument("--data", default="seek_avoid", help="an env name (darla envs), dsprites (the procedural replica), or the original dsprites .npz")
    vs.add_argument("--metrics", default="all", help="comma-separated metric names, or all")
    vs.add_argument("--settings", default="fast", choices=["fast", "full"],
                    help="sample sizes of the metrics: fast (seconds to a minute, for runs and tests) or full (the published ones, minutes)")
    vs.add_argument("--domain", default=None, help="score on this domain of the env (e.g. vision, as stage 1 does); default: every scene")
    vs.add_argument("--seed", type=int, default=0, help="seed of the metrics' samples")
    vs.add_argument("--probe", action="store_true", help="also the MLP probe per factor (what a policy can read), under 'probe'")
    vs.add_argument("--out", type=Path, default=None, help="also write the scores as JSON here")
    vs.set_defaults(func=_cmd_score)

    vsel = vsub.add_parser("select", help="rank trained vision models without labels (UDR)")
    vsel.add_argument("models", type=Path, nargs="+", help="run directories or model.pt files (same hyperparameters, different seeds)")
    vsel.add_argument("--env", default="seek_avoid", help="env whose vision-domain renders are encoded")
    vsel.add_argument("--n-images", type=int, default=1000, help="vision-domain renders every model encodes")
    vsel.add_argument("--similarity", default="spearman", choices=["spearman", "lasso"], help="UDR's similarity between two models' latents")
    vsel.add_argument("--seed", type=int, default=0, help="seed of the renders")
    vsel.add_argument("--out", type=Path, default=None, help="also write the ranking as JSON here")
    vsel.set_defaults(func=_cmd_select)

    ps = sub.add_parser("scan", help="SCAN: symbols grounded in a trained vision model's latents")
    ssub = ps.add_subparsers(dest="scmd", metavar="<command>", title="commands")
    ps.set_defaults(func=_help_of(ps))
    st = ssub.add_parser("train", help="train SCAN (and its recombination operators) on RUN_DIR's vision model")
    st.add_argument("run_dir", type=Path, help="a run directory whose vision stage is complete")
    st.add_argument("--steps", type=int, default=None, help="default: the run's scan.steps")
    st.add_argument("--recombine-steps", type=int, default=None, help="default: the run's scan.recombine_steps")
    st.add_argument("--compare", action="append", default=None, choices=list(SCAN_ABLATIONS),
                    help="also train an ablation: reverse_kl (SCAN_R) or entangled (SCAN on a β = 1 vision model); repeatable")
    st.add_argument("--seed", type=int, default=None, help="default: the run's scan.seed, else its seed")
    st.add_argument("--set", dest="overrides", action="append", default=[], metavar="scan.KEY=VALUE",
                    help="override a scan setting of the run's config, e.g. --set scan.lam=5.0 (repeatable)")
    st.add_argument("--no-progress", action="store_true", help=_NO_PROGRESS_HELP)
    st.set_defaults(func=_scan_train)
    si = ssub.add_parser("imagine", help='sym2img: e.g. darla scan imagine RUN_DIR "navy floor AND red object"')
    si.add_argument("run_dir", type=Path, help="a run directory with a trained SCAN (darla scan train)")
    si.add_argument("expression", help='words joined by AND (see darla scan describe for the words), e.g. "navy floor AND red object"')
    si.add_argument("--n", type=int, default=8, help="images sampled")
    si.add_argument("--out", type=Path, default=None, help="PNG path (default: RUN_DIR/scan/imagine.png)")
    si.add_argument("--seed", type=int, default=0, help="seed of the sampled latents")
    si.set_defaults(func=_cmd_scan)
    sd = ssub.add_parser("describe", help="img2sym: the words SCAN finds in an image")
    sd.add_argument("run_dir", type=Path, help="a run directory with a trained SCAN (darla scan train)")
    sd.add_argument("image", type=Path, help="an RGB image file at the vision model's size (e.g. a PNG of an env frame)")
    sd.set_defaults(func=_cmd_scan)

    pa = sub.add_parser("agent", help="stage 2 alone")
    asub = pa.add_subparsers(dest="acmd", metavar="<command>", title="commands")
    pa.set_defaults(func=_help_of(pa))
    at = asub.add_parser("train", help="train the policies of CONFIG (runs stage 1 first if needed)")
    _config_args(at)
    at.set_defaults(func=partial(_stages_cmd, stages=upstream("agent")))

    pt = sub.add_parser("transfer", help="stage 3 alone")
    tsub = pt.add_subparsers(dest="tcmd", metavar="<command>", title="commands")
    pt.set_defaults(func=_help_of(pt))
    te = tsub.add_parser("eval", help="zero-shot evaluation in the target domains")
    _config_args(te)
    te.set_defaults(func=partial(_stages_cmd, stages=upstream("transfer")))

    pr = sub.add_parser("report", help="(re)write report.html and results.json of a run directory, "
                        "or sweep_report.html and sweep_results.csv of a sweep directory")
    pr.add_argument("run_dir", type=Path, help="a run directory, or a sweep directory (holding sweep.json)")
    pr.set_defaults(func=_cmd_report)

    psw = sub.add_parser("sweep", help="expand a sweep file (grid/list × seeds) into runs and run (or continue) them")
    psw.add_argument("sweep_file", type=Path, help="YAML sweep file (see README, Sweeps)")
    psw.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: processes on this machine; ray: one Ray task per run (pip install -e \".[ray]\")")
    psw.add_argument("--workers", type=_positive_int, default=None,
                     help="runs at a time (local, default 1; ray: CPUs of the local Ray it starts)")
    psw.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    psw.add_argument("--sweep-dir", type=Path, default=None, help="default: the file's sweep_dir, else <base runs_dir>/<name>")
    psw.add_argument("--dry-run", action="store_true", help="expand and validate; list the runs; run nothing")
    psw.set_defaults(func=_cmd_sweep)

    sub.add_parser("envs", help="list environments, their factors and domain presets").set_defaults(func=_cmd_envs)
    return p


def _help_of(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The command of a parser whose subcommand is missing: print its help (which lists them)."""

    def print_help(_: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return print_help


class UsageError(UserError, ValueError):
    """A bad command-line argument (not a config key): exit 2, one line naming the argument."""

    exit_code = 2


def _out_path(path: Path | None, flag: str = "--out") -> Path | None:
    """A file path the user named for output: its directory must exist (darla creates directories
    only inside run directories), and it must not be a directory itself."""
    if path is None:
        return None
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory; name a file in it")
    if not path.parent.is_dir():
        raise UsageError(f"{flag}: directory {path.parent} does not exist; create it first (darla creates no directories outside a run)")
    return path


#: ``darla scan imagine --n``: samples tiled into one PNG.
MAX_IMAGINE = 256
#: ``darla scan describe``: no vision model takes larger images (env.size ≤ 256; dSprites 64).
MAX_IMAGE_SIDE = 4096


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)


def _stages_cmd(args: argparse.Namespace, stages: tuple[str, ...]) -> int:
    if args.force and getattr(args, "update", False):
        raise UsageError("--update and --force contradict each other (--update keeps stage 1 and re-runs what the "
                         "changed config touches; --force starts over): give one")
    cfg = _load(args)  # before importing torch (seconds): a bad file is refused at once
    from darla.pipeline import run_pipeline

    if cfg.vision.data == "dsprites" and stages != ("vision",):
        raise ConfigError(args.config, "vision.data", "dsprites has no policy to train: it is for stage 1 alone (darla vision train)")
    run = run_pipeline(cfg, run_dir=args.run_dir, force=args.force, update=getattr(args, "update", False), progress=not args.no_progress, stages=stages)
    if "report" in stages:
        _print_summary(run.root)
    return 0


def _print_summary(root: Path) -> None:
    from darla.report.run import SUMMARY_HEADER, format_table, summary_rows

    results = json.loads((root / "results.json").read_text())
    print()
    print(format_table(summary_rows(results), SUMMARY_HEADER))
    print(f"\nreport: {(root / 'report.html').resolve()}")


def _cmd_report(args: argparse.Namespace) -> int:
    from darla.runs import RunDir
    from darla.stages.report import stage_report

    if (args.run_dir / "sweep.json").is_file():
        return _cmd_sweep_report(args.run_dir)
    run = RunDir(args.run_dir)
    if not run.config_path.exists():
        raise FileNotFoundError(f"{args.run_dir} is not a darla run directory (no config.yaml) nor a sweep directory (no sweep.json)")
    cfg = load_config(run.config_path, check_build=False, check_files=False)  # its stages ran
    register_external_env(cfg.env, str(run.config_path))  # the report draws the env's frames
    with run.lock():  # it writes the manifest: not while a pipeline runs here
        for s in upstream("transfer"):
            if not run.is_complete(s):
                raise FileNotFoundError(f"{args.run_dir}: stage {s!r} is not complete; run `darla pipeline` first")
        stage_report(cfg, run)
    _print_summary(run.root)
    return 0


def _cmd_sweep_report(sweep_dir: Path) -> int:
    from darla.report.run import format_table
    from darla.report.sweep import summary_lines, write_sweep_report

    paths = write_sweep_report(sweep_dir)
    header, rows = summary_lines(sweep_dir)
    print(format_table(rows, header))
    print(f"\nreport: {paths[-1].resolve()}\nfigure: {paths[2].resolve()}\nresults: {paths[0].resolve()}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    load_yaml(args.sweep_file)  # before importing torch (seconds): a bad file is refused at once
    from darla.report.run import format_table
    from darla.sweep import SweepError, load_sweep, run_sweep

    sweep = load_sweep(args.sweep_file, args.sweep_dir)
    if args.dry_run:
        rows = [(r.name, r.vision_key, ", ".join(f"{k}={r.overrides[k]!r}" for k in sweep.keys if k in r.overrides)) for r in sweep.runs]
        print(format_table(rows, ("run", "vision group", "overrides")))
        print(f"\n{len(sweep.runs)} runs, {len({r.vision_key for r in sweep.runs})} vision model(s), in {sweep.sweep_dir}")
        return 0
    state = run_sweep(sweep, executor=args.executor, workers=args.workers, address=args.address)
    rows = [(r["name"], r["status"], r.get("error", "")) for r in state["runs"]]
    print(format_table(rows, ("run", "status", "error")))
    failed = [r for r in state["runs"] if r["status"] != "complete"]
    if failed:
        raise SweepError(f"{len(failed)} of {len(rows)} runs did not complete; see {sweep.sweep_dir / 'sweep.json'} "
                         "and each run's sweep.log; run the same command again to continue")
    print(f"\nsweep: {sweep.sweep_dir.resolve()}  (darla report {sweep.sweep_dir})")
    return 0


def _cmd_traverse(args: argparse.Namespace) -> int:
    import numpy as np

    from envs.factors import to_chw_float
    from envs.registry import ENVS, get_env_info, make_env
    from vision.registry import load_checkpoint
    from vision.traverse import save_png, traversal_grid

    if args.env not in ENVS:
        raise UsageError(f"--env: unknown env {args.env!r}; choose from {', '.join(sorted(ENVS))}")
    _out_path(args.out)
    model = load_checkpoint(args.checkpoint)
    _, h, _ = model.obs_shape
    info = get_env_info(args.env)
    env = make_env(args.env, info.domains["all"] if "all" in info.domains else next(iter(info.domains.values())), size=h)
    obs, _ = env.reset(seed=args.seed)
    x = to_chw_float(obs[None])
    kl = model.kl_per_dim(x)
    out = args.out or args.checkpoint.with_name("traversals.png")
    save_png(out, traversal_grid(model, x[0], order=np.argsort(-kl)))
    print(f"traversals: {out}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from envs.registry import ENVS, get_domain, get_env_info
    from vision.metrics import score
    from vision.registry import load_checkpoint

    _out_path(args.out)
    model = load_checkpoint(args.checkpoint)
    if args.domain is not None and args.data not in ENVS:
        raise ValueError(f"--domain needs --data to be an env ({', '.join(sorted(ENVS))}), not {args.data!r}")
    if args.data == "dsprites":
        from envs.dsprites import DSprites

        data = DSprites()
    elif args.data.endswith(".npz"):
        from envs.dsprites import DSpritesNpz

        data = DSpritesNpz(args.data)
    elif args.data in ENVS:
        try:
            domain = get_domain(args.data, args.domain) if args.domain is not None else None
        except KeyError as e:  # an unknown preset: its message names the valid ones
            raise ValueError(f"--domain: {e.args[0]}") from None
        data = get_env_info(args.data).ground_truth(model.obs_shape[1], domain)
    else:
        raise ValueError(f"unknown --data {args.data!r}; choose from {', '.join(sorted(ENVS))}, dsprites, or a dSprites .npz path")
    if tuple(data.observation_shape) != tuple(model.obs_shape):
        raise ValueError(f"{args.checkpoint} takes images {model.obs_shape}, but {args.data} renders {data.observation_shape}")
    names = "all" if args.metrics == "all" else [m.strip() for m in args.metrics.split(",") if m.strip()]
    res = score(data, model.represent, np.random.default_rng(args.seed), metrics=names, settings=args.settings)
    if args.probe:  # as stage 1 runs it: its own sample, seeded from --seed
        from vision.metrics.probe import probe_for_seed

        res["probe"] = probe_for_seed(data, model.represent, args.seed, args.settings)
    text = json.dumps(res, indent=2, sort_keys=True, default=float)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


def _cmd_select(args: argparse.Namespace) -> int:
    import numpy as np

    from darla.runs import RunDir
    from envs.factors import sample_images
    from envs.registry import ENVS, get_env_info
    from vision.registry import load_checkpoint
    from vision.select import udr_rank

    if args.env not in ENVS:
        raise ValueError(f"unknown --env {args.env!r}; choose from {', '.join(sorted(ENVS))}")
    _out_path(args.out)
    paths = [RunDir(p).vision_model() if p.is_dir() else p for p in args.models]
    models = [load_checkpoint(p) for p in paths]
    info = get_env_info(args.env)
    data = info.ground_truth(models[0].obs_shape[1], info.domains["vision"])
    rng = np.random.default_rng(args.seed)
    images = sample_images(data, args.n_images, rng)
    res = udr_rank(models, images, similarity=args.similarity)
    from darla.report.run import format_table

    rows = [(str(r + 1), str(paths[i]), f"{res['scores'][i]:.3f}") for r, i in enumerate(res["order"])]
    print(format_table(rows, ("rank", "model", f"UDR ({args.similarity})")))
    if args.out:
        args.out.write_text(json.dumps({"models": [str(p) for p in paths], **res}, indent=2) + "\n")
    return 0


def _scan_context(run_dir: Path, overrides: Sequence[str] = ()):
    """(run, config, :class:`darla.stages.scan.ScanContext`) of a run directory; ``overrides`` may set scan.* keys only."""
    from darla.runs import RunDir
    from darla.stages.scan import scan_context

    run = RunDir(run_dir)
    if not run.config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a darla run directory (no config.yaml)")
    for ov in overrides:
        if not ov.strip().startswith("scan."):
            raise ConfigError("--set", ov.partition("=")[0], "darla scan train can only override scan.* keys (the rest describes what already ran)")
    cfg = load_config(run.config_path, overrides, check_build=False, check_files=False)  # its stages ran
    register_external_env(cfg.env, str(run.config_path))
    return run, cfg, scan_context(cfg, run)


def _scan_train(args: argparse.Namespace) -> int:
    """The scan stage on a finished vision stage, with the run's scan settings unless flags override them."""
    from darla.report.run import format_table
    from darla.stages.scan import VARIANTS, metric_keys, stage_scan, variant_files

    overrides = list(args.overrides)
    for key, value in (("steps", args.steps), ("recombine_steps", args.recombine_steps), ("seed", args.seed)):
        if value is not None:
            overrides.append(f"scan.{key}={value}")
    if args.compare is not None:
        overrides.append(f"scan.compare=[{', '.join(args.compare)}]")
    run, cfg, _ = _scan_context(args.run_dir, overrides)
    with run.lock():  # one process per run dir, as darla pipeline
        run.invalidate("scan", "report")  # asked to train: start SCAN over; the report must show the new one
        stage_scan(cfg, run, progress=not args.no_progress)
    results = json.loads(run.path("scan", "results.json").read_text())
    names = results["variant_order"]
    records = {n: metric_keys(json.loads(variant_files(run, n)[1].read_text())) for n in names}
    rows = [(k, *(f"{records[n][k]:.3f}" for n in names)) for k in sorted(records[names[0]])]
    print(format_table(rows, ("SCAN evaluation", *(VARIANTS[n].label for n in names))))
    print(f"\nscan: {run.path('scan')}")
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from darla.stages.scan import variant_files
    from vision.scan.train import load_scan, parse_expression
    from vision.scan.vocab import Vocabulary

    if args.scmd == "imagine":
        if not 1 <= args.n <= MAX_IMAGINE:
            raise UsageError(f"--n: the number of samples must be in 1 … {MAX_IMAGINE}, got {args.n}")
        _out_path(args.out)
    else:  # the header only: a bad or huge image is refused before the run is loaded, and never decoded
        width, height = _image_size(args.image)
        if max(width, height) > MAX_IMAGE_SIDE:
            raise UsageError(f"IMAGE: {args.image} is {width}×{height}; vision models take at most {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE} "
                             "(the run's env.size)")
    from envs.registry import get_env_info

    run, cfg, (model, _, _) = _scan_context(args.run_dir)
    scan, _, names = load_scan(variant_files(run, "scan")[0])  # the forward-KL SCAN, as trained by the stage
    device = next(model.parameters()).device
    scan.to(device)
    vocab = Vocabulary(get_env_info(cfg.env.name).scene_space, names)  # the words it was trained with
    if args.scmd == "imagine":
        from vision.traverse import save_png, tile, to_uint8_hwc

        y, words = parse_expression(args.expression, vocab)
        gen = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            images = scan.sym2img(torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device), model, n=args.n, generator=gen)[0].cpu()
        out = args.out or run.path("scan", "imagine.png")
        save_png(out, tile([to_uint8_hwc(images)]))
        print(f"{' + '.join(words)}: {args.n} samples in {out}")
        return 0
    import cv2

    c, h, w = model.obs_shape
    width, height = _image_size(args.image)
    if (height, width) != (h, w):  # decided from the header: a huge image is never decoded
        raise UsageError(f"IMAGE: {args.image} is {width}×{height}; the vision model takes {w}×{h}")
    img = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
    if img is None or img.shape[:2] != (h, w):
        raise UsageError(f"IMAGE: cannot decode {args.image} as a {w}×{h} image")
    x = torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    probs = scan.img2sym(x.to(device), model)[0].cpu().numpy()
    for word, alias, p in sorted(zip(vocab.words, vocab.aliases, probs), key=lambda t: -t[2]):
        if p >= 0.5:
            print(f"{alias:<24}{word:<32}{p:.2f}")
    return 0


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header alone (Pillow opens lazily; nothing is decoded)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise UsageError(f"IMAGE: no image file at {path}")
    try:
        with warnings.catch_warnings():  # Pillow's decompression-bomb warning: the size check below says it
            warnings.simplefilter("ignore")
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # darla checks the size itself, next
            try:
                with Image.open(path) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UsageError(f"IMAGE: {path} is not an image Pillow can read ({type(e).__name__})") from None


def _cmd_envs(_: argparse.Namespace) -> int:
    from envs.registry import ENVS

    for name, info in ENVS.items():
        print(f"{name}  ({info.gym_id}, {info.action_kind} actions)")
        for f in info.scene_space.factors:
            print(f"  factor {f.name}: {', '.join(f'{i}={v}' for i, v in enumerate(f.values))}")
        aliases = getattr(info.domains, "aliases", {})
        for dname, dom in info.domains.items():
            also = [a for a, n in aliases.items() if n == dname]
            alias = f" (also accepted as {', '.join(also)})" if also else ""
            print(f"  domain {dname}{alias}: {_describe_domain(dom)}")
    return 0


def _describe_domain(dom) -> str:
    """A domain as factor values: a product of value sets, or every combination but one such
    product (DARLA's held-out pair), else just its size. Factors free in it are not named."""
    import numpy as np

    space = dom.space
    everything = space.all_combinations()

    def product(rows: np.ndarray) -> str | None:
        if not len(rows):
            return None
        parts, n = [], 1
        for j, f in enumerate(space.factors):
            vals = sorted(set(rows[:, j].tolist()))
            n *= len(vals)
            if len(vals) < f.size:
                parts.append(f"{f.name} in {{{', '.join(f.values[v] for v in vals)}}}")
        if n != len({tuple(r) for r in rows.tolist()}):
            return None
        return " x ".join(parts) or "every combination"

    inside = {tuple(r) for r in np.asarray(dom.combos).tolist()}
    desc = product(np.asarray(dom.combos))
    if desc is None:
        rest = product(np.array([r for r in everything.tolist() if tuple(r) not in inside]).reshape(-1, len(space)))
        desc = None if rest is None else f"every combination except {rest}"
    return f"{len(dom)} combinations" + (f": {desc}" if desc else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return report_failures(lambda: args.func(args))
    except KeyboardInterrupt:
        print("\ndarla: interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130


def report_failures(func: Callable[[], object], prog: str = "darla") -> int:
    """Run ``func()`` and return its exit status, reporting a failure the user can act on as one
    line on stderr, ``<prog>: <label>: <message>``, with no traceback: ``darla`` itself, and each
    script in ``benchmarks/`` (whose configs and ``--set`` overrides are checked as darla's are).
    ``func``'s integer result is the status; any other result is success (0). Unexpected failures
    keep their traceback."""
    try:
        result = func()
    except UserError as e:  # config, usage, run-dir and sweep errors: each class says its exit status
        print(f"{prog}: {e.label}: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        if _is_user_error(e):
            print(f"{prog}: error: {_user_message(e)}", file=sys.stderr)
            return 1
        raise
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


#: OSErrors that are the machine's state, not a bug: a full disk or quota, a read-only filesystem,
#: no permission.
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _is_user_error(e: BaseException) -> bool:
    """A failure the user can act on that is no :class:`~darla.errors.UserError` (the lower layers
    and the standard library raise these): a missing file, a bad value (a checkpoint that is not
    one is a ValueError too), a full or read-only disk, a loss gone non-finite."""
    if isinstance(e, (FileNotFoundError, PermissionError, ValueError)) or (isinstance(e, OSError) and e.errno in _DISK_ERRNOS):
        return True
    from vision.train import NonFiniteLossError  # torch: only for an error that may be one

    return isinstance(e, NonFiniteLossError)


def _user_message(e: BaseException) -> str:
    """One line for an expected failure; a full disk names the file and says how to go on."""
    if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
        what = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "operation not permitted"}[e.errno]
        where = f" writing {e.filename}" if e.filename else " (no file named by the system)"
        fix = {errno.EROFS: "use another --run-dir", errno.EACCES: "check the permissions of that path (or use another --run-dir)",
               errno.EPERM: "check the permissions of that path (or use another --run-dir)"}.get(e.errno, "free some space (or use another --run-dir)")
        return f"{what}{where}; {fix}, then run the same command again to resume"
    return str(e)


if __name__ == "__main__":
    sys.exit(main())
