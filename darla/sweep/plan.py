"""What a sweep has left to do, from what its directory holds; and what ``sweep.json`` says."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from darla.config import Config, ConfigError, diff_configs, dump_config, read_run_config
from darla.runs import RunDir, RunDirError
from darla.stages import enabled_stages
from darla.sweep.groups import vision_config
from darla.sweep.spec import Sweep, SweepRun


def run_is_complete(run_dir: Path, cfg: Config) -> bool:
    """Every stage complete (hashes checked) and the run dir holds this very config."""
    run = RunDir(run_dir)
    if not run.config_path.exists():
        return False
    try:
        old = read_run_config(run.config_path)
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
        **({} if sweep.learned_min is None else {"learned_min": sweep.learned_min}),
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


@dataclass
class Plan:
    """What is left to do: vision groups to train, runs to run (each naming its group)."""

    visions: dict[str, Config]
    runs: list[SweepRun]


def plan_sweep(sweep: Sweep) -> tuple[Plan, dict[str, dict[str, Any]]]:
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
    return Plan(visions, todo), status

