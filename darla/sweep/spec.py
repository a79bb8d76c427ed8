"""The sweep file: read, expanded into runs, and every run validated like a config file.

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
    learned_min: 0.5                   # optional: the report's "learned the source task" bar

``seeds`` sets the top-level ``seed``: the random-policy frames, the vision model's init and batch
order, and the bootstrap. So every seed is a distinct vision model, i.e. one more point in the
disentanglement-vs-transfer figure. Policy seeds stay ``agent.seeds`` (the transfer statistics
are over them); grid over ``agent.seeds`` to split them across runs that share a vision model.

Every expanded run is validated by :func:`darla.config.config_from_dict`, exactly like a config
file; an error names the sweep file and where the bad value came from (``grid.vision.beta[1]``).
Runs live in ``<sweep_dir>/runs/<run-name>``, where the name is a readable ``key-value`` summary
of the run's overrides plus a hash of them (deterministic, filesystem- and ``name``-safe).

The run names come from :mod:`darla.sweep.names`, the vision groups from :mod:`darla.sweep.groups`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from darla.config import (
    Config,
    ConfigError,
    config_from_dict,
    did_you_mean,
    load_config,
    load_yaml,
    safe_name,
    set_dotted,
)
from darla.sweep.groups import vision_key
from darla.sweep.names import make_run_name, short_keys

#: Keys a sweep file may hold.
SWEEP_KEYS = ("base", "name", "sweep_dir", "set", "grid", "list", "seeds", "resources", "learned_min")
#: Keys of ``resources:`` (Ray task options).
RESOURCE_KEYS = ("num_cpus", "num_gpus")
#: A sweep larger than this is almost certainly a typo (a list where a value was meant).
MAX_RUNS = 10_000
#: Config keys a sweep sets itself.
RESERVED = ("name",)


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
    #: the normalised source score at which the report counts a policy as having learned the task
    #: (None: the report's default). Per sweep, because what a policy that misses the task's point
    #: scores depends on the env: on reacher a policy blind to the target scores 0.2-0.4.
    learned_min: float | None = None

    def run_dir(self, run: SweepRun) -> Path:
        return self.sweep_dir / "runs" / run.name

    def vision_dir(self, key: str) -> Path:
        return self.sweep_dir / "vision" / key


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
    learned_min = raw.get("learned_min")
    if learned_min is not None and (isinstance(learned_min, bool) or not isinstance(learned_min, (int, float))
                                    or not 0.0 <= learned_min <= 1.0):
        raise ConfigError(source, "learned_min", f"expected a normalised source score in [0, 1], got {learned_min!r}")

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
    short = short_keys(keys)
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
    return Sweep(path, name, base, Path(sweep_dir), runs, resources, keys,
                 None if learned_min is None else float(learned_min))


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

