"""Run (or continue) the stages of a config in a run directory.

``run_pipeline`` skips every stage whose manifest entry is complete (artifacts present, hashes
matching) and resumes an interrupted stage from its last checkpoint; ``force`` starts over. A
failed stage raises and leaves every earlier stage's artifacts as they were. A re-run with a
changed config is reconciled here (:func:`reconcile_config`) from what :mod:`darla.stages`
declares each stage reads."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from darla.config import Config, diff_configs, dump_config, read_run_config, register_external_env
from darla.runs import (
    SUPERSEDED,
    RunDir,
    RunDirError,
    agent_unit,
    check_writable,
    provenance,
    remove_path,
)
from darla.stages import (
    ALL_STAGES,
    STAGE_FILES,
    agent_units_unchanged,
    downstream,
    enabled_stages,
    stage_of_key,
)
from darla.stages.agent import stage_agent
from darla.stages.common import Log, print_log
from darla.stages.report import stage_report
from darla.stages.scan import stage_scan
from darla.stages.transfer import stage_transfer
from darla.stages.vision import stage_vision
from vision.io import replace_via_file, write_text_atomic
from vision.registry import make_model
from vision.train import resolve_device

STAGE_FUNCS: dict[str, Callable[..., dict[str, Any]]] = {
    "vision": stage_vision, "agent": stage_agent, "transfer": stage_transfer, "scan": stage_scan, "report": stage_report,
}
assert tuple(STAGE_FUNCS) == ALL_STAGES


def reconcile_config(run: RunDir, cfg: Config, update: bool) -> tuple[list[str], list[str], set[str]]:
    """A re-run whose config differs from the run's: (changed keys, stages to re-run, the complete
    stage-2 policies to keep), or a refusal.

    Keys that change no result (``None`` in :data:`darla.stages.READS`) are accepted. With ``update``, keys
    read only from stage 2 on are accepted too: the stages they touch and everything downstream
    are to be re-run (:func:`supersede`), stage 1 is kept, and so is every complete policy the
    change leaves alone (:func:`darla.stages.agent_units_unchanged`: a method or seeds added to a
    side by side train only themselves). A change that touches stage 1 is refused, naming the
    keys. Nothing is written or deleted here.
    """
    import yaml


    if not run.config_path.exists():
        return [], [], set()
    old, new = read_run_config(run.config_path), yaml.safe_load(dump_config(cfg))
    changed = diff_configs(old, new)
    if not changed:
        return [], [], set()
    reads = {k: stage_of_key(k, old, new) for k in changed}
    touched = [s for s in ALL_STAGES if s in reads.values()]
    keys = ", ".join(changed)
    if "vision" in touched or (touched and not update):
        vision_keys = [k for k, s in reads.items() if s == "vision"]
        how = (
            f"{', '.join(vision_keys)} change{'s' if len(vision_keys) == 1 else ''} stage 1: use --force to start over, or another name"
            if vision_keys else
            f"add --update to keep stage 1 and re-run {', '.join(touched)} and what depends on them, or use --force to start over"
        )
        raise RunDirError(f"{run.root} was run with a different config (changed: {keys}); {how}")
    redo = [s for s in ALL_STAGES if s in touched or any(s in downstream(t) for t in touched)]
    keep: set[str] = set()
    if "agent" in redo:
        stages = run.manifest()["stages"]
        keep = {u for u in agent_units_unchanged(changed, old, new) or ()
                if (stages.get(u) or {}).get("status") == "complete"}
    return changed, redo, keep


def supersede(run: RunDir, redo: list[str], config_text: str, keep: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Move the results of ``redo`` aside into ``<run>/.superseded`` and adopt the new config.

    The run's config and manifest as they were go there too, so :func:`restore_superseded` can
    put the complete run back if the update fails; :func:`discard_superseded` deletes them once
    every re-run stage is complete. An update on top of a pending one keeps what is already
    aside (the last complete results) and drops the pending update's own, never-final, output.

    ``keep``: complete units of a re-run stage (manifest names such as ``agent/<m>/ppo_seed0``)
    the change leaves alone. The stage's folder still goes aside whole, so a restore stays the
    exact old tree; each kept unit is copied back into the new one and keeps its manifest entry,
    and the stage re-runs only the rest. Returns the units kept.
    """
    aside = run.path(SUPERSEDED)
    pending = aside.is_dir()
    aside.mkdir(exist_ok=True)
    if not pending:
        for name in ("manifest.json", "config.yaml"):
            if run.path(name).exists():
                replace_via_file(aside / name, lambda tmp, name=name: shutil.copy2(run.path(name), tmp))
    for stage in redo:
        units = {u for u in keep if u.startswith(stage + "/")}
        for name in (stage, *STAGE_FILES.get(stage, ())):
            src = run.path(name)
            if not (src.exists() or src.is_symlink()):
                continue
            if (aside / name).exists() or (aside / name).is_symlink():
                # the pending update's output; the complete result is already aside
                _remove_all_but(src, name, units)
            else:
                os.replace(src, aside / name)
        for unit in sorted(units):
            if not run.path(unit).is_dir() and (aside / unit).is_dir():
                _copy_back(aside / unit, run.path(unit))
    kept = {u for u in keep if run.path(u).is_dir()}  # a unit whose files are gone is re-run, not kept
    run.invalidate(*redo, keep=kept)
    write_text_atomic(run.config_path, config_text)
    return kept


def _remove_all_but(path: Path, rel: str, units: set[str]) -> None:
    """Remove ``path`` (``rel`` in the run dir) but for the kept ``units`` inside it."""
    if rel in units:
        return
    if not any(u.startswith(rel + "/") for u in units) or path.is_symlink() or not path.is_dir():
        remove_path(path)
        return
    for child in list(path.iterdir()):
        _remove_all_but(child, f"{rel}/{child.name}", units)


def _copy_back(src: Path, dst: Path) -> None:
    """Copy a kept unit's folder from the superseded results into the run, whole or not at all."""
    tmp = dst.with_name(f".{dst.name}.copying")
    remove_path(tmp)  # a copy a kill interrupted
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, symlinks=True)
    os.replace(tmp, dst)


def restore_superseded(run: RunDir) -> bool:
    """Put a pending update's superseded results, config and manifest back (False: none pending).

    Idempotent, so an interrupted restore is finished by the next run: a ``RESTORING`` mark is
    written first and removed last.
    """
    aside = run.path(SUPERSEDED)
    if not aside.is_dir():
        return False
    write_text_atomic(aside / "RESTORING", "")
    for item in sorted(aside.iterdir()):
        if item.name in ("RESTORING", "manifest.json", "config.yaml"):
            continue
        remove_path(run.path(item.name))
        os.replace(item, run.path(item.name))
    for name in ("config.yaml", "manifest.json"):
        if (aside / name).exists():
            os.replace(aside / name, run.path(name))
    (aside / "RESTORING").unlink()
    aside.rmdir()
    return True


def discard_superseded(run: RunDir) -> None:
    remove_path(run.path(SUPERSEDED))


def _has_work(run: RunDir, stages: list[str]) -> bool:
    """Whether any of ``stages`` will run (a stage whose artifacts fail their check will too: the
    stage loop below reports it, in order)."""
    for name in stages:
        try:
            if not run.is_complete(name):
                return True
        except RunDirError:
            return True
    return False


def run_pipeline(
    cfg: Config,
    *,
    run_dir: Path | None = None,
    force: bool = False,
    update: bool = False,
    progress: bool = True,
    stages: tuple[str, ...] = ALL_STAGES,
    log: Log = print_log,
) -> RunDir:
    """Run (or continue) every stage of ``cfg`` in ``run_dir`` (default ``runs_dir/name``).

    ``scan`` runs only when ``scan.enabled`` is true. The run dir is locked for the whole run
    (:meth:`RunDir.lock`): another process on it raises :class:`RunDirError` at once. With
    ``update``, the superseded results stay in ``.superseded`` until every stage is complete,
    and an update whose stage fails puts the complete run back as it was.
    """
    if force and update:
        raise ValueError("--force and --update contradict each other: --force starts over, --update keeps stage 1")
    if cfg.vision.data == "dsprites" and tuple(stages) != ("vision",):
        raise ValueError("vision.data: dsprites is for stage 1 alone (darla vision train): it has no policy to train")
    register_external_env(cfg.env)  # validating cfg registered nothing; the stages make its envs
    run = RunDir(Path(run_dir) if run_dir is not None else Path(cfg.runs_dir) / cfg.name)
    with run.lock():  # one process per run dir; a second one fails at once, naming the first
        if run.path(SUPERSEDED, "RESTORING").exists():  # a restore that was killed: finish it first
            restore_superseded(run)
        changed, redo, keep = ([], [], set()) if force else reconcile_config(run, cfg, update)
        try:
            if redo:
                n = len(supersede(run, redo, dump_config(cfg), keep))
                kept = f" and {n} complete polic{'y' if n == 1 else 'ies'} it leaves alone are" if n else " is"
                log(f"[run] config changed ({', '.join(changed)}): re-running {', '.join(redo)}; stage 1{kept} kept, "
                    f"the old results wait in {SUPERSEDED}/ until the new ones are complete")
            elif changed:  # keys that change no result: the run keeps its results under the new config
                write_text_atomic(run.config_path, dump_config(cfg))
            run.prepare(dump_config(cfg), force=force)
            need, left = space_needed(cfg, run, stages)
            check_writable(run.root, need, f" for the stages left ({', '.join(left)})" if left else "")
            if _has_work(run, enabled_stages(cfg, stages)):

                run.record_provenance(provenance(str(resolve_device(cfg.device))))
            for name in enabled_stages(cfg, stages):
                if run.is_complete(name):
                    log(f"[{name}] complete, skipping")
                    continue
                run.invalidate(*downstream(name))
                run.begin_attempt(name)
                t0 = time.time()
                outcome = "failed"
                try:
                    STAGE_FUNCS[name](cfg, run, progress=progress, log=log)
                    outcome = "complete"
                except KeyboardInterrupt:
                    outcome = "interrupted"
                    raise
                except OSError as e:
                    if e.filename is None and e.errno is not None:  # a write() deep in a library names no file
                        raise OSError(e.errno, e.strerror, str(run.path(name) if name != "report" else run.root)) from e
                    raise
                finally:
                    _end_attempt(run, name, time.time() - t0, outcome)
                log(f"[{name}] done in {time.time() - t0:.1f} s")
        except Exception:
            # An update that fails (a bad value, a full disk) must not cost the complete run it
            # replaces. An interrupt is not a failure: it leaves the update to be continued.
            if restore_superseded(run):
                log(f"[run] the update failed: {run.root} is back to its last complete results and config")
            raise
        if run.path(SUPERSEDED).exists() and all(
            run.is_complete(s) for s in enabled_stages(cfg)
        ):
            discard_superseded(run)
    return run


def _end_attempt(run: RunDir, name: str, seconds: float, outcome: str) -> None:
    """Record the attempt's time; when the stage failed, never at the cost of its error."""
    if outcome == "complete":
        run.end_attempt(name, seconds, outcome)
        return
    try:
        run.end_attempt(name, seconds, outcome)
    except (OSError, RunDirError):  # e.g. the disk that failed the stage: its own error is the one to see
        pass


_MIB = 2**20


def _vision_params(cfg: Config, model: str, params: dict[str, Any]) -> int:
    """Parameters of a vision model as configured, counted on the meta device (no memory, no init)."""
    size, channels = (64, 1) if cfg.vision.data == "dsprites" else (cfg.env.size, 3)
    try:
        with torch.device("meta"):
            net = make_model(model, (channels, size, size), latent_dim=cfg.vision.latent_dim, **params)
        return sum(p.numel() for p in net.parameters())
    except Exception:  # noqa: BLE001 (β-VAE-DAE before its DAE is trained: its DAE counted as a second VAE)
        arch = {k: params[k] for k in ("channels", "hidden") if k in params}
        return 2 * _vision_params(cfg, "vae", arch) if model != "vae" else 10_000_000


def space_needed(cfg: Config, run: RunDir, stages: tuple[str, ...]) -> tuple[int, list[str]]:
    """Bytes the stages not yet complete will write, generously (×1.5, + 2 MiB); and their names.

    Vision: per model, its weights 4× (model.pt, and the resume checkpoint with Adam's two
    moments) + figures and logs. Agent: per (method, seed) not yet done, the policy 3× (model.zip,
    checkpoint.zip with the optimiser) + its replay buffer (off-policy: the observations it will
    have stored) + logs. A resume after a full disk is sized by what is left, not by a constant.
    """
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from agents.algos import ALGOS

    def done(name: str) -> bool:
        entry = run.stage(name)
        return bool(entry) and entry.get("status") == "complete"

    v, a = cfg.vision, cfg.agent
    vision_params = _vision_params(cfg, v.model, v.params)
    # a pixel policy's conv encoder: a VAE at vision's architecture (agent_spec), decoder included: generous
    pixel_params = _vision_params(cfg, "vae", {k: v.params[k] for k in ("channels", "hidden") if k in v.params})
    image = (1 if v.data == "dsprites" else 3) * cfg.env.size**2
    need, left = 0, []
    for name in stages:
        if name not in enabled_stages(cfg) or done(name):
            continue
        left.append(name)
        if name == "vision":
            models = [vision_params] * max(1, len(v.seeds))
            models += [_vision_params(cfg, m.encoder, m.params) for n, m in cfg.methods.items()
                       if m.encoder not in ("vision", "pixels") and not done(f"vision/encoders/{n}")]
            need += sum(16 * p + 2 * _MIB for p in models)
        elif name == "agent":
            off_policy = issubclass(ALGOS[a.algo], OffPolicyAlgorithm)
            for method, m in cfg.methods.items():
                policy = pixel_params if m.observe == "pixels" else 100_000
                obs = image if m.observe == "pixels" else 4 * v.latent_dim
                buffer = 2 * obs * min(int({**a.hyperparams, **m.hyperparams}.get("buffer_size", 1_000_000)), cfg.timesteps_of(method))
                per_run = 12 * policy + (buffer if off_policy else 0) + _MIB
                need += per_run * sum(not done(agent_unit(method, a.algo, s)) for s in a.seeds)
        else:
            need += {"transfer": _MIB, "scan": 4 * _MIB, "report": 4 * _MIB}[name]
    return int(1.5 * need) + 2 * _MIB, left
