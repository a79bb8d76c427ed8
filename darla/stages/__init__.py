"""The stages of a run and what ties them together: their order, which stage reads which
stage's files (:data:`DEPENDS_ON`) and which config keys (:func:`stage_of_key`).

One module per stage holds its body (:mod:`darla.stages.vision`, ``agent``, ``transfer``,
``scan``, ``report``); :mod:`darla.pipeline` runs them. This module imports none of them, so
any of them (and the report) may import :mod:`darla.stages.common` without a cycle."""

from __future__ import annotations

from typing import Any

from darla.config import ENCODER_KINDS, Config

#: Every stage, in the order a pipeline runs them.
ALL_STAGES: tuple[str, ...] = ("vision", "agent", "transfer", "scan", "report")
#: What each stage reads. Re-running a stage re-runs everything downstream of it, and nothing else:
#: SCAN needs only the vision model, so retraining policies keeps it.
DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "vision": (), "agent": ("vision",), "transfer": ("agent",), "scan": ("vision",), "report": ("transfer", "scan"),
}


def downstream(name: str) -> list[str]:
    """Every stage that (transitively) reads ``name``'s artifacts."""
    out: list[str] = []
    for stage in ALL_STAGES:
        if stage not in out and any(d == name or d in out for d in DEPENDS_ON[stage]):
            out.append(stage)
    return out


def upstream(name: str) -> tuple[str, ...]:
    """``name`` and every stage it (transitively) reads, in pipeline order."""
    need = {name}
    for stage in reversed(ALL_STAGES):
        if stage in need:
            need.update(DEPENDS_ON[stage])
    return tuple(s for s in ALL_STAGES if s in need)


def enabled_stages(cfg: Config, stages: tuple[str, ...] = ALL_STAGES) -> tuple[str, ...]:
    """``stages`` as a run of ``cfg`` has them: SCAN only with ``scan.enabled``."""
    return tuple(s for s in stages if s != "scan" or cfg.scan.enabled)


#: Config keys that no stage's results depend on: what the run is called, how many processes.
EXECUTION_ONLY = ("name", "runs_dir", "agent.workers")


def stage_of_key(key: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first stage whose results depend on dotted config ``key`` (None: no stage's do).

    Stage 1 reads seed, device, env (its vision domain), vision, metrics, and methods whose
    encoder is another registry model (trained beside vision.model); stage 2 the source domain,
    agent and the other methods (and the targets, for ``agent.log_targets``).
    """
    if key in EXECUTION_ONLY:
        return None
    parts = key.split(".")
    if parts[0] in ("agent", "transfer", "scan"):
        return parts[0]
    if key.startswith(("env.domains.source", "env.domains.targets")):
        return "agent"
    if parts[0] == "methods":
        names = [parts[1]] if len(parts) > 1 else sorted({*(old.get("methods") or {}), *(new.get("methods") or {})})
        for cfg in (old, new):
            for n in names:
                if ((cfg.get("methods") or {}).get(n) or {}).get("encoder", "vision") not in ENCODER_KINDS:
                    return "vision"
        return "agent"
    return "vision"


#: The files of each stage outside its own directory.
STAGE_FILES: dict[str, tuple[str, ...]] = {"report": ("report.html", "results.json")}
