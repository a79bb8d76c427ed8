"""The report stage: ``report.html`` and ``results.json`` from the files the other stages wrote."""

from __future__ import annotations

import time
from typing import Any

from darla.config import Config
from darla.runs import RunDir
from darla.stages.common import Log, print_log


def stage_report(cfg: Config, run: RunDir, *, progress: bool = True, log: Log = print_log) -> dict[str, Any]:
    from darla.report.run import write_report

    started = time.time()
    paths = write_report(cfg, run)
    return run.complete("report", paths, {}, started)
