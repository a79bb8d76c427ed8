"""The stages of a run and what ties them together: their order, which stage reads which
stage's files (:data:`DEPENDS_ON`) and which config keys (:func:`stage_of_key`).

One module per stage holds its body (:mod:`darla.stages.vision`, ``agent``, ``transfer``,
``scan``, ``report``); :mod:`darla.pipeline` runs them. This module imports none of them, so
any of them (and the report) may import :mod:`darla.stages.common` without a cycle."""

from __future__ import annotations

from typing import Any

from darla.config import ENCODER_KINDS, Config
from darla.runs import agent_unit

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


#: The first stage whose results depend on each part of a config: a dotted key belongs to its
#: longest prefix listed here, and anything unlisted to stage 1 (seed, device, env, vision,
#: metrics), so a new setting can only cause more recomputation, never less. None: no stage's
#: results depend on it (what the run is called, how many processes). Pipeline re-runs
#: (:func:`darla.pipeline.reconcile_config`) and sweep stage-1 groups (:func:`darla.sweep.vision_key`)
#: both read it through :func:`stage_of_key`.
READS: dict[str, str | None] = {
    "name": None, "runs_dir": None, "agent.workers": None,
    "agent": "agent", "transfer": "transfer", "scan": "scan", "methods": "agent",
    "env.domains.source": "agent", "env.domains.targets": "agent",  # targets: agent.log_targets
}
#: What stage 1 reads of a method whose encoder is another registry model: it trains that encoder.
STAGE_1_METHOD_KEYS = ("encoder", "params")


def stage_of_key(key: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first stage whose results depend on dotted config ``key`` (:data:`READS`); ``old`` and
    ``new`` (plain config dicts) say which methods' encoders stage 1 trains."""
    parts = key.split(".")
    if parts[0] == "methods" and (len(parts) < 3 or parts[2] in STAGE_1_METHOD_KEYS):
        names = [parts[1]] if len(parts) > 1 else sorted({*(old.get("methods") or {}), *(new.get("methods") or {})})
        for cfg in (old, new):
            for n in names:
                if ((cfg.get("methods") or {}).get(n) or {}).get("encoder", "vision") not in ENCODER_KINDS:
                    return "vision"
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in READS:
            return READS[prefix]
    return "vision"


#: The files of each stage outside its own directory.
STAGE_FILES: dict[str, tuple[str, ...]] = {"report": ("report.html", "results.json")}


def agent_units_unchanged(changed: list[str], old: dict[str, Any], new: dict[str, Any]) -> set[str] | None:
    """The stage-2 policies a config change leaves alone, or None when it reaches all of them.

    A policy is trained from its method's settings (``methods.<m>``), its seed and the settings
    every policy shares (the rest of ``agent``, the source domain, the targets it logs). So a
    change confined to some methods' settings, or to which seeds ``agent.seeds`` lists, leaves
    every other method's policies for the seeds both configs list exactly as they were: adding a
    method or seeds to a side by side re-trains nothing that is already there. Any other key read
    from stage 2 on (``agent.algo``, a shared hyperparameter, a domain) reaches every policy.
    Stage-1 keys reach every policy too. Keys of later stages (``transfer.*``) and keys that
    change no result do not count here."""
    touched: set[str] = set()
    for key in changed:
        stage = stage_of_key(key, old, new)
        if stage is None or (stage != "agent" and "agent" not in downstream(stage)) or key == "agent.seeds":
            continue  # read by no stage, or only by stages after the policies
        parts = key.split(".")
        if parts[0] != "methods" or len(parts) < 2:
            return None
        touched.add(parts[1])
    agent_old, agent_new = old.get("agent") or {}, new.get("agent") or {}
    algo = agent_new.get("algo")
    if algo is None or agent_old.get("algo") != algo:
        return None
    methods = set(old.get("methods") or {}) & set(new.get("methods") or {}) - touched
    seeds = set(agent_old.get("seeds") or []) & set(agent_new.get("seeds") or [])
    return {agent_unit(m, algo, s) for m in methods for s in seeds}
