"""Sweeps: a grid (and a list) of config overrides × seeds, expanded into ordinary pipeline runs.

A sweep file is YAML; paths in it are relative to the file::

    base: ../configs/quick.yaml        # the config every run starts from (required)
    name: beta_sweep                   # optional; default: the file's stem
    sweep_dir: ../runs/beta_sweep      # optional; default: <base runs_dir>/<name> (like a run dir)
    set: {agent.total_timesteps: 5000} # optional: overrides applied to every run
    grid:                              # dotted config key → values; cartesian product
      vision.beta: [1.0, 4.0, 8.0]
    list:                              # explicit runs (override mappings), each × grid × seeds
      - {vision.model: beta_vae}
      - {vision.model: beta_tcvae, vision.lr: null}
    seeds: [0, 1, 2]                   # → the top-level ``seed`` of each run
    resources: {num_cpus: 1, num_gpus: 0}   # per Ray task (ignored by the local executor)

``seeds`` sets the top-level ``seed``: the random-policy frames, the vision model's init and batch
order, and the bootstrap. So every seed is a distinct vision model, i.e. one more point in the
disentanglement-vs-transfer figure. Policy seeds stay ``agent.seeds`` (the transfer statistics
are over them); grid over ``agent.seeds`` to split them across runs that share a vision model.

Every expanded run is validated by :func:`darla.config.config_from_dict`, exactly like a config
file; an error names the sweep file and where the bad value came from (``grid.vision.beta[1]``).
Runs live in ``<sweep_dir>/runs/<run-name>``, where the name is a readable ``key-value`` summary
of the run's overrides plus a hash of them (deterministic, filesystem- and ``name``-safe).

Stage 1 is shared. Runs whose stage-1 inputs agree (:func:`vision_key`: the keys that
:data:`darla.stages.READS` gives to stage 1) form one group; each group's vision stage runs
once, in ``<sweep_dir>/vision/<key>/`` (an ordinary, resumable run directory), and its artifacts
are then copied into each run's ``vision/`` with their manifest entries (hashes verified), marked
``reused_from``. Each run directory is therefore self-contained and resumable on its own:
``darla pipeline``/``darla report`` work on it as on any run, and deleting the shared directory
loses nothing. Running the sweep again skips complete runs and continues the rest, each from its
first incomplete stage; ``<sweep_dir>/sweep.json`` records every run's overrides and status.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from darla.config import (
    ENCODER_KINDS,
    AgentConfig,
    Config,
    ConfigError,
    MethodConfig,
    ScanConfig,
    TransferConfig,
    config_from_dict,
    did_you_mean,
    diff_configs,
    dump_config,
    load_config,
    load_yaml,
    safe_name,
    set_dotted,
)
from darla.errors import UserError
from darla.runs import RunDir, RunDirError
from darla.stages import STAGE_1_METHOD_KEYS, downstream, enabled_stages, stage_of_key
from vision.io import replace_via_file, write_json_atomic

Log = Callable[[str], None]

#: Keys a sweep file may hold.
SWEEP_KEYS = ("base", "name", "sweep_dir", "set", "grid", "list", "seeds", "resources")
#: Keys of ``resources:`` (Ray task options).
RESOURCE_KEYS = ("num_cpus", "num_gpus")
#: A sweep larger than this is almost certainly a typo (a list where a value was meant).
MAX_RUNS = 10_000
#: Config keys a sweep sets itself.
RESERVED = ("name",)
EXECUTORS = ("local", "ray")


class SweepError(UserError, RuntimeError):
    """A sweep that ran but did not finish every run (failed runs, a missing Ray)."""


@dataclass(frozen=True)
class Resources:
    """Per-task resources for the Ray executor (fractions allowed, as in Ray)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0


@dataclass(frozen=True)
class SweepRun:
    name: str
    #: dotted config key → value, as applied (``set``, then grid, then list entry, then seed).
    overrides: dict[str, Any]
    #: dotted config key → where the sweep file sets it (``grid.vision.beta[1]``), for errors.
    origins: dict[str, str]
    config: Config
    #: identity of the run's stage-1 inputs; runs with the same key share one vision stage.
    vision_key: str


@dataclass(frozen=True)
class Sweep:
    path: Path
    name: str
    base: Path
    sweep_dir: Path
    runs: list[SweepRun]
    resources: Resources = field(default_factory=Resources)
    #: the dotted keys that vary between runs (grid, list and seed), in file order.
    keys: list[str] = field(default_factory=list)

    def run_dir(self, run: SweepRun) -> Path:
        return self.sweep_dir / "runs" / run.name

    def vision_dir(self, key: str) -> Path:
        return self.sweep_dir / "vision" / key


# ---------------------------------------------------------------------------------------------
# Loading and expansion
# ---------------------------------------------------------------------------------------------
def load_sweep(path: str | Path, sweep_dir: str | Path | None = None) -> Sweep:
    """Read, expand and validate a sweep file. Every problem raises a one-line :class:`ConfigError`."""
    path = Path(path)
    source = str(path)
    raw = load_yaml(path)  # bounded and strict, as a config file
    if not isinstance(raw, dict):
        raise ConfigError(source, "(top level)", f"a sweep file is a mapping with base: and grid:/list:/seeds:, got {type(raw).__name__}")
    for k in raw:
        if k not in SWEEP_KEYS:
            raise ConfigError(source, str(k), did_you_mean(str(k), SWEEP_KEYS))

    if "base" not in raw:
        raise ConfigError(source, "base", "required: the config file every run starts from (relative to the sweep file)")
    if not isinstance(raw["base"], str) or not raw["base"].strip():
        raise ConfigError(source, "base", f"expected a path to a config file, got {raw['base']!r}")
    base = (path.parent / raw["base"]).resolve() if not Path(raw["base"]).is_absolute() else Path(raw["base"])
    if not base.is_file():
        raise ConfigError(source, "base", f"config file {raw['base']!r} not found (paths are relative to the sweep file)")
    try:  # the base must be a valid config on its own: its errors name its file, via the sweep
        base_cfg = load_config(base)
    except ConfigError as e:
        raise ConfigError(source, "base", str(e)) from None
    base_raw = load_yaml(base)

    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not safe_name(name):
        raise ConfigError(source, "name", f"use letters, digits, '-', '_' and '.', got {name!r}")
    if sweep_dir is None:
        if "sweep_dir" in raw:
            if not isinstance(raw["sweep_dir"], str) or not raw["sweep_dir"].strip():
                raise ConfigError(source, "sweep_dir", f"expected a directory path, got {raw['sweep_dir']!r}")
            sweep_dir = path.parent / raw["sweep_dir"]
        else:
            sweep_dir = Path(base_cfg.runs_dir) / name
    resources = _resources(raw.get("resources"), source)

    fixed = _overrides(raw.get("set"), source, "set")
    grid = _grid(raw.get("grid"), source)
    entries = _list(raw.get("list"), source)
    seeds = _seeds(raw.get("seeds"), source)
    if not grid and not entries and not seeds:
        raise ConfigError(source, "grid", "a sweep needs at least one of grid:, list: or seeds:")
    n = max(1, len(entries)) * max(1, len(seeds))
    for values in grid.values():
        n *= len(values)
    if n > MAX_RUNS:
        raise ConfigError(source, "grid", f"expands to {n} runs (more than {MAX_RUNS}); is a value a list by mistake?")

    # Which keys vary, in file order: they name the runs.
    keys: list[str] = list(grid)
    for entry in entries:
        keys += [k for k in entry if k not in keys]
    if seeds:
        keys.append("seed")
    _check_overlaps(fixed, grid, entries, seeds, source)

    runs: list[SweepRun] = []
    by_name: dict[str, str] = {}
    short = _short_keys(keys)
    for entry_i, entry in enumerate(entries or [{}]):
        for combo in itertools.product(*(list(enumerate(v)) for v in grid.values())) if grid else [()]:
            for seed in seeds or [None]:
                overrides = dict(fixed)
                origins = {k: f"set.{k}" for k in fixed}
                for k, (i, v) in zip(grid, combo):
                    overrides[k], origins[k] = v, f"grid.{k}[{i}]"
                for k, v in entry.items():
                    overrides[k], origins[k] = v, f"list[{entry_i}].{k}"
                if seed is not None:
                    overrides["seed"], origins["seed"] = seed, f"seeds[{seeds.index(seed)}]"
                varying = {k: overrides[k] for k in keys if k in overrides}
                run_name = make_run_name(varying, short)
                where = ", ".join(origins[k] for k in varying) or "base"
                if run_name in by_name:
                    raise ConfigError(source, origins[next(iter(varying))] if varying else "list",
                                      f"duplicate run: {where} repeats {by_name[run_name]}")
                by_name[run_name] = where
                cfg = _run_config(base_raw, overrides, origins, run_name, source)
                runs.append(SweepRun(run_name, overrides, origins, cfg, vision_key(cfg)))
    return Sweep(path, name, base, Path(sweep_dir), runs, resources, keys)


def _is_dotted(k: Any) -> bool:
    return isinstance(k, str) and bool(k) and all(p.strip() == p and p for p in k.split("."))


def _overrides(raw: Any, source: str, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, where, f"expected a mapping of dotted config keys to values, got {raw!r}")
    for k in raw:
        if not _is_dotted(k):
            raise ConfigError(source, f"{where}.{k}", "malformed key: write dotted config keys, e.g. vision.beta")
        if k.split(".")[0] in RESERVED:
            raise ConfigError(source, f"{where}.{k}", "set by the sweep: each run is named after its overrides")
    return dict(raw)


def _grid(raw: Any, source: str) -> dict[str, list[Any]]:
    grid = _overrides(raw, source, "grid")
    for k, values in grid.items():
        if not isinstance(values, list):
            raise ConfigError(source, f"grid.{k}", f"expected a list of values, got {values!r} (write [{values!r}] for one value)")
        if not values:
            raise ConfigError(source, f"grid.{k}", "empty list: the grid would have no runs")
        for i, v in enumerate(values):
            if v in values[:i]:
                raise ConfigError(source, f"grid.{k}[{i}]", f"duplicate value {v!r}")
    return grid


def _list(raw: Any, source: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, "list", f"expected a non-empty list of override mappings, got {raw!r}")
    return [_overrides(e if e is not None else {}, source, f"list[{i}]") for i, e in enumerate(raw)]


def _seeds(raw: Any, source: str) -> list[int]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, "seeds", f"expected a non-empty list of integers, got {raw!r}")
    for i, s in enumerate(raw):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(source, f"seeds[{i}]", f"expected an integer ≥ 0, got {s!r}")
        if s in raw[:i]:
            raise ConfigError(source, f"seeds[{i}]", f"duplicate seed {s}")
    return list(raw)


def _resources(raw: Any, source: str) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise ConfigError(source, "resources", f"expected a mapping like {{num_cpus: 1, num_gpus: 0}}, got {raw!r}")
    out = {}
    for k, v in raw.items():
        if k not in RESOURCE_KEYS:
            raise ConfigError(source, f"resources.{k}", did_you_mean(str(k), RESOURCE_KEYS))
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
            raise ConfigError(source, f"resources.{k}", f"expected a number ≥ 0, got {v!r}")
        out[k] = float(v)
    if out.get("num_cpus", 1.0) == 0 and out.get("num_gpus", 0.0) == 0:
        raise ConfigError(source, "resources.num_cpus", "a task needs some CPU or GPU")
    return Resources(**out)


def _check_overlaps(fixed: dict, grid: dict, entries: list[dict], seeds: list[int], source: str) -> None:
    """One key, one source: a key set twice (or inside a key set whole) would be ambiguous."""
    def clash(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    groups: list[tuple[str, list[str]]] = [("set", list(fixed)), ("grid", list(grid))]
    groups += [(f"list[{i}]", list(e)) for i, e in enumerate(entries)]
    if seeds:
        groups.append(("seeds", ["seed"]))
    for gi, (gname, gkeys) in enumerate(groups):
        for i, k in enumerate(gkeys):
            for k2 in gkeys[:i]:
                if clash(k, k2):
                    raise ConfigError(source, f"{gname}.{k}", f"overlaps {gname}.{k2}")
            for hname, hkeys in groups[:gi]:
                if gname.startswith("list[") and hname.startswith("list["):
                    continue  # list entries are alternatives, not combined
                for k2 in hkeys:
                    if clash(k, k2):
                        what = "seeds" if hname == "seeds" else f"{hname}.{k2}"
                        mine = "seeds" if gname == "seeds" else f"{gname}.{k}"
                        raise ConfigError(source, mine, f"also set by {what}: set each key in one place")


def _run_config(base_raw: Any, overrides: dict[str, Any], origins: dict[str, str], name: str, source: str) -> Config:
    """The run's config: base + overrides, validated; errors blame the sweep file and the override."""
    raw = json.loads(json.dumps(base_raw or {}))  # a deep copy (YAML data is JSON data)
    for k, v in overrides.items():
        blocked = set_dotted(raw, k, json.loads(json.dumps(v)))
        if blocked is not None:
            raise ConfigError(source, _key_only(origins[k]), f"{blocked} is not a mapping in the base config, cannot set a key inside it")
    raw["name"] = name
    try:
        cfg = config_from_dict(raw, source)
    except ConfigError as e:
        blamed = _blame(e.key, origins)
        if blamed is not None and e.message.startswith("unknown key"):
            blamed = _key_only(blamed)  # the key is wrong, whatever its value: no "[i]"
        if blamed is not None:
            raise ConfigError(source, blamed, e.message) from None
        where = ", ".join(f"{origins[k]}={v!r}" for k, v in overrides.items()) or "the base config"
        raise ConfigError(source, e.key, f"{e.message} (with {where})") from None
    if cfg.vision.data != "env":
        raise ConfigError(source, origins.get("vision.data", "base"), "vision.data: dsprites is stage 1 alone; a sweep runs the whole pipeline")
    return cfg


def _blame(key: str, origins: Mapping[str, str]) -> str | None:
    """The sweep-file location of the override that ``key`` (a config error's key) lies in."""
    for k, origin in origins.items():
        if key == k:
            return origin
        for sep in (".", "["):
            if key.startswith(k + sep):
                return origin + key[len(k):]
        if k.startswith(key + "."):
            return origin
    return None


def _key_only(origin: str) -> str:
    """``grid.vision.betta[0]`` → ``grid.vision.betta``: for errors about the key, not one value."""
    return re.sub(r"\[\d+\]$", "", origin) if origin.startswith("grid.") else origin


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Shortest dotted suffix of each key that no other key ends with: vision.beta → beta."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if not any(o != k and (o == cand or o.endswith("." + cand)) for o in keys):
                out[k] = cand
                break
        else:
            out[k] = k
    return out


def _slug(v: Any) -> str:
    if isinstance(v, list):
        s = "-".join(_slug(x) for x in v)
    elif isinstance(v, dict):
        s = "-".join(f"{k}-{_slug(x)}" for k, x in v.items())
    elif isinstance(v, bool) or v is None:
        s = json.dumps(v)
    else:
        s = str(v)
    s = "".join(c for c in s if c.isalnum() or c in "._-")
    return re.sub("_+", "_", s)[:24]  # "__" separates pairs in a run name


def make_run_name(overrides: Mapping[str, Any], short: Mapping[str, str] | None = None) -> str:
    """``beta-4.0__seed-1__3fa2b1c8``: readable key-value pairs, then 8 hex digits of their hash.

    The hash is over the canonical JSON of the overrides, so the name is the same whatever the
    process, order of keys or machine; the summary is cut at 80 characters, the hash keeps it unique.
    Only letters, digits, '-', '_' and '.' (a valid ``name`` and a portable directory name).
    """
    short = short or {}
    digest = hashlib.sha256(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
    summary = "__".join(f"{short.get(k, k)}-{_slug(v)}" for k, v in overrides.items())[:80].strip("_-.")
    return f"{summary}__{digest}" if summary else digest


def vision_config(cfg: Config) -> Config:
    """``cfg`` as the shared stage-1 job of its group runs it: every key stage 1 reads
    (:func:`darla.stages.stage_of_key`) as in ``cfg``, the rest at defaults. The source domain is
    set to the vision domain and the targets dropped: stage 1 never reads them, and no env lacks
    its vision domain. A test checks that this keeps every key :func:`vision_key` hashes.
    """
    d = cfg.env.domains
    trained = {
        n: MethodConfig(**{k: getattr(m, k) for k in STAGE_1_METHOD_KEYS})
        for n, m in cfg.methods.items() if m.encoder not in ENCODER_KINDS
    }
    return replace(
        cfg, name="vision", runs_dir=".", agent=AgentConfig(), transfer=TransferConfig(), scan=ScanConfig(),
        methods=trained, env=replace(cfg.env, domains=replace(d, source=d.vision, targets={})),
    )


def stage_1_inputs(cfg: Config) -> dict[str, Any]:
    """Dotted key → value of every key of ``cfg`` that stage 1 reads (:func:`darla.stages.stage_of_key`)."""
    d = cfg.to_dict()
    return {k: v for k, v in _flat(d).items() if stage_of_key(k, d, d) == "vision"}


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def vision_key(cfg: Config) -> str:
    """12 hex digits identifying ``cfg``'s stage-1 inputs (:func:`stage_1_inputs`)."""
    return hashlib.sha256(json.dumps(stage_1_inputs(cfg), sort_keys=True, default=str).encode()).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------
# State of a sweep on disk
# ---------------------------------------------------------------------------------------------
def run_is_complete(run_dir: Path, cfg: Config) -> bool:
    """Every stage complete (hashes checked) and the run dir holds this very config."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        return False
    try:
        old = load_yaml(run.config_path) or {}
        if diff_configs(old, yaml.safe_load(dump_config(cfg))):
            return False  # the pipeline will say what changed, as a failed run
        return all(run.is_complete(s) for s in enabled_stages(cfg))
    except (RunDirError, ConfigError, yaml.YAMLError, OSError):
        return False  # corrupted: the pipeline reports it, the sweep records the run as failed


def sweep_state(sweep: Sweep, status: Mapping[str, Mapping[str, Any]], executor: str) -> dict[str, Any]:
    """The content of ``sweep.json``: every run, its overrides, vision group and status."""
    groups: dict[str, list[str]] = {}
    for r in sweep.runs:
        groups.setdefault(r.vision_key, []).append(r.name)
    return {
        "name": sweep.name,
        "sweep_file": str(sweep.path.resolve()),
        "base": str(sweep.base),
        "executor": executor,
        "keys": sweep.keys,
        "runs": [
            {
                "name": r.name, "dir": f"runs/{r.name}", "overrides": r.overrides, "origins": r.origins,
                "vision": r.vision_key, **status.get(r.name, {"status": "pending"}),
            }
            for r in sweep.runs
        ],
        "vision": {
            k: {"dir": f"vision/{k}", "runs": names, **status.get(f"vision/{k}", {"status": "pending"})}
            for k, names in groups.items()
        },
    }


# ---------------------------------------------------------------------------------------------
# Jobs (top-level functions: they run in spawned processes and Ray workers)
# ---------------------------------------------------------------------------------------------
def _file_log(path: Path) -> Log:
    path.parent.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        with open(path, "a", encoding="utf-8") as f:
            f.write(msg + "\n")

    return log


def _failure(e: BaseException, log: Log) -> dict[str, Any]:
    log(traceback.format_exc())
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return {"status": "failed", "error": f"{type(e).__name__}: {msg}" if msg else type(e).__name__}


def vision_job(cfg: Config, vision_dir: str, threads: int | None = 1) -> dict[str, Any]:
    """Stage 1 of one vision group, in its shared run directory (resumable like any run)."""
    from darla.pipeline import run_pipeline

    if threads:
        import torch

        torch.set_num_threads(threads)  # one per worker: N workers on N cores, not N × N threads
    t0 = time.time()
    log = _file_log(Path(vision_dir) / "sweep.log")
    try:
        run_pipeline(cfg, run_dir=Path(vision_dir), progress=False, log=log, stages=("vision",))
    except Exception as e:  # recorded in sweep.json; the runs of this group are skipped, not the sweep
        return {**_failure(e, log), "wall_time_s": round(time.time() - t0, 2)}
    return {"status": "complete", "wall_time_s": round(time.time() - t0, 2)}


def run_job(
    cfg: Config, run_dir: str, vision_dir: str, vision_result: Mapping[str, Any] | None = None,
    threads: int | None = 1,
) -> dict[str, Any]:
    """One run: its stage 1 copied from the shared vision dir, then the pipeline from there on."""
    from darla.pipeline import run_pipeline

    if vision_result is not None and vision_result.get("status") != "complete":
        return {"status": "failed", "error": f"its vision stage failed ({vision_result.get('error', '?')})"}
    if threads:
        import torch

        torch.set_num_threads(threads)
    t0 = time.time()
    log = _file_log(Path(run_dir) / "sweep.log")
    try:
        run = RunDir(Path(run_dir))
        with run.lock():  # held from the copy through the pipeline (which re-enters it)
            run.prepare(dump_config(cfg), force=False)
            if not run.is_complete("vision"):
                copy_shared_vision(run, RunDir(Path(vision_dir)))
                log(f"[vision] copied from {vision_dir}")
            run_pipeline(cfg, run_dir=Path(run_dir), progress=False, log=log)
    except Exception as e:
        return {**_failure(e, log), "wall_time_s": round(time.time() - t0, 2)}
    return {"status": "complete", "wall_time_s": round(time.time() - t0, 2)}


def copy_shared_vision(run: RunDir, shared: RunDir) -> None:
    """Copy a complete stage 1 (every ``vision*`` manifest entry and the files it hashes) into ``run``.

    Copies, not links: the run stays valid if the shared directory goes, and nothing written in
    one run dir can reach another. Stages downstream of vision are invalidated first, so a policy
    trained on some other encoder is never kept beside the copied one.
    """
    if not shared.is_complete("vision"):  # checks every recorded hash of the source
        raise RunDirError(f"{shared.root}: the shared vision stage is not complete")
    entries = {k: v for k, v in shared.manifest()["stages"].items() if k == "vision" or k.startswith("vision/")}
    run.invalidate("vision", *downstream("vision"))
    for entry in entries.values():
        for rel in entry.get("sha256", {}):
            dst = run.root / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            replace_via_file(dst, lambda tmp, rel=rel: shutil.copyfile(shared.root / rel, tmp))
    rel_src = os.path.relpath(shared.root, run.root)
    m = run.manifest()
    m["stages"].update({k: {**v, "reused_from": rel_src} for k, v in entries.items()})
    write_json_atomic(run.manifest_path, m)
    if not run.is_complete("vision"):  # hashes of the copies
        raise RunDirError(f"{run.root}: copying the vision stage from {shared.root} failed")


# ---------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    """What is left to do: vision groups to train, runs to run (each naming its group)."""

    visions: dict[str, Config]
    runs: list[SweepRun]


def plan_sweep(sweep: Sweep) -> tuple[_Plan, dict[str, dict[str, Any]]]:
    """Skip complete runs and vision groups nobody needs; the status of everything skipped."""
    status: dict[str, dict[str, Any]] = {}
    shared_done: dict[str, bool] = {}
    for key in dict.fromkeys(r.vision_key for r in sweep.runs):  # each shared dir hashed once
        try:
            shared_done[key] = RunDir(sweep.vision_dir(key)).is_complete("vision")
        except RunDirError:
            shared_done[key] = False  # corrupted: its vision job fails and says which file
        if shared_done[key]:
            status[f"vision/{key}"] = {"status": "complete"}
    todo: list[SweepRun] = []
    visions: dict[str, Config] = {}
    for r in sweep.runs:
        if run_is_complete(sweep.run_dir(r), r.config):
            status[r.name] = {"status": "complete", "skipped": True}
            continue
        todo.append(r)
        own = RunDir(sweep.run_dir(r))
        try:
            has_vision = own.config_path.exists() and own.is_complete("vision")
        except RunDirError:
            has_vision = False
        if not shared_done[r.vision_key] and not has_vision:
            visions.setdefault(r.vision_key, vision_config(r.config))
    for key in shared_done:  # every run of the group complete, or holding its own copy
        if key not in visions:
            status.setdefault(f"vision/{key}", {"status": "not needed"})
    return _Plan(visions, todo), status


def run_sweep(
    sweep: Sweep, *, executor: str = "local", workers: int | None = None, address: str | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """Run (or continue) every run of ``sweep``; returns the final ``sweep.json`` content.

    ``local``: ``workers`` processes at a time (``spawn``; one torch thread each); one worker
    runs in this process. ``ray``: one Ray task per vision group and per run, with ``resources``,
    on a local Ray started here (``workers`` CPUs) or the cluster at ``address``. Runs of a vision
    group start as soon as their group's stage 1 is done. The sweep dir is locked while this
    runs (:meth:`darla.runs.RunDir.lock`): a second driver on it fails at once.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if address is not None and executor != "ray":
        raise ValueError("--address names a Ray cluster: use it with --executor ray")
    # Absolute: a Ray worker (or a cluster node) does not share this process's working directory.
    sweep = replace(sweep, sweep_dir=sweep.sweep_dir.resolve())
    from darla.runs import check_writable

    # One driver per sweep dir: the lock is the sweep dir's own .lock; each run (and each shared
    # vision dir) is locked separately by whichever process runs it.
    with RunDir(sweep.sweep_dir).lock(kind="sweep"):
        check_writable(sweep.sweep_dir)
        plan, status = plan_sweep(sweep)
        tracker = _Tracker(sweep, status, executor, log)
        tracker.write()
        skipped = len(sweep.runs) - len(plan.runs)
        log(f"[sweep] {sweep.name}: {len(sweep.runs)} runs ({skipped} complete), {len(plan.visions)} vision model(s) to train, "
            f"{len({r.vision_key for r in sweep.runs})} vision group(s); {executor} executor; in {sweep.sweep_dir}")
        if plan.runs:
            try:
                if executor == "ray":
                    _execute_ray(sweep, plan, tracker, workers, address)
                else:
                    _execute_local(sweep, plan, tracker, workers or 1)
            except BaseException:
                tracker.interrupted()
                raise
        return tracker.write()


class _Tracker:
    """Collects job results and rewrites ``sweep.json`` (atomically) after each one."""

    def __init__(self, sweep: Sweep, status: dict[str, dict[str, Any]], executor: str, log: Log) -> None:
        self.sweep, self.status, self.executor, self.log = sweep, status, executor, log

    def write(self) -> dict[str, Any]:
        state = sweep_state(self.sweep, self.status, self.executor)
        write_json_atomic(self.sweep.sweep_dir / "sweep.json", state)
        return state

    def running(self, key: str) -> None:
        self.status[key] = {"status": "running"}

    def done(self, key: str, result: Mapping[str, Any]) -> None:
        self.status[key] = dict(result)
        err = f": {result['error']}" if result.get("error") else ""
        self.log(f"[sweep] {key}: {result['status']}{err} ({result.get('wall_time_s', 0):.1f} s)")
        self.write()

    def interrupted(self) -> None:
        for v in self.status.values():
            if v.get("status") == "running":
                v["status"] = "interrupted"
        self.write()


def _execute_local(sweep: Sweep, plan: _Plan, tracker: _Tracker, workers: int) -> None:
    if workers == 1:  # in this process: no spawn cost, and a debugger sees everything
        import torch

        saved = torch.get_num_threads()  # one thread, as a worker has (2 on a busy 2-core box ran 5× slower)
        try:
            vision_results = {}
            for key, vcfg in plan.visions.items():
                tracker.running(f"vision/{key}")
                vision_results[key] = vision_job(vcfg, str(sweep.vision_dir(key)))
                tracker.done(f"vision/{key}", vision_results[key])
            for r in plan.runs:
                tracker.running(r.name)
                tracker.done(r.name, run_job(r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)),
                                             vision_results.get(r.vision_key)))
        finally:
            torch.set_num_threads(saved)
        return

    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")  # CUDA and torch's thread pools do not survive fork
    waiting = {key: [r for r in plan.runs if r.vision_key == key] for key in plan.visions}
    pending: dict[Future, str] = {}
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        def submit_run(r: SweepRun, vres: Mapping[str, Any] | None) -> None:
            pending[pool.submit(run_job, r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)), vres)] = r.name
            tracker.running(r.name)

        for key, vcfg in plan.visions.items():
            pending[pool.submit(vision_job, vcfg, str(sweep.vision_dir(key)))] = f"vision/{key}"
            tracker.running(f"vision/{key}")
        for r in plan.runs:
            if r.vision_key not in plan.visions:
                submit_run(r, None)
        tracker.write()
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    key = pending.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as e:  # a worker that died (OOM, segfault) takes only its job
                        result = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    if key.startswith("vision/"):
                        for r in waiting.pop(key.split("/", 1)[1]):
                            submit_run(r, result)
                    tracker.done(key, result)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _execute_ray(sweep: Sweep, plan: _Plan, tracker: _Tracker, workers: int | None, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs Ray: pip install 'darla[ray]' (or: pip install 'ray[default]>=2.9')") from None

    started_here = not ray.is_initialized()
    if started_here:
        kwargs: dict[str, Any] = {"address": address} if address else {"num_cpus": workers} if workers else {}
        ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
    refs: dict[Any, str] = {}
    try:
        opts = {"num_cpus": sweep.resources.num_cpus, "num_gpus": sweep.resources.num_gpus}
        vision_task = ray.remote(vision_job).options(**opts)
        run_task = ray.remote(run_job).options(**opts)
        vision_refs = {}
        for key, vcfg in plan.visions.items():
            vision_refs[key] = vision_task.remote(vcfg, str(sweep.vision_dir(key)))
            refs[vision_refs[key]] = f"vision/{key}"
            tracker.running(f"vision/{key}")
        for r in plan.runs:  # a run's vision result is an argument: Ray starts it when that is ready
            ref = run_task.remote(r.config, str(sweep.run_dir(r)), str(sweep.vision_dir(r.vision_key)), vision_refs.get(r.vision_key))
            refs[ref] = r.name
            tracker.running(r.name)
        tracker.write()
        remaining = list(refs)
        while remaining:
            done, remaining = ray.wait(remaining, num_returns=1)
            try:
                result = ray.get(done[0])
            except Exception as e:  # a task whose worker died; the others go on
                result = {"status": "failed", "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"}
            tracker.done(refs[done[0]], result)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()


__all__ = [
    "Sweep", "SweepRun", "SweepError", "Resources", "load_sweep", "run_sweep", "make_run_name", "vision_config",
    "vision_key", "copy_shared_vision", "run_is_complete", "plan_sweep",
]
