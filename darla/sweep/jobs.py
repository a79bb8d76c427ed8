"""The jobs of a sweep: one vision group's stage 1, one run. Top-level functions taking plain
arguments, because they run in spawned processes and Ray workers."""

from __future__ import annotations

import os
import shutil
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from darla.config import Config, dump_config
from darla.runs import RunDir, RunDirError
from darla.stages import downstream
from vision.io import replace_via_file, write_json_atomic

Log = Callable[[str], None]


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


