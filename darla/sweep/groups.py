"""Vision groups: the runs of a sweep whose stage-1 inputs agree share one vision model.

Which keys stage 1 reads is declared once, in :mod:`darla.stages` (:func:`~darla.stages.stage_of_key`);
this module only derives the group of a config from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from darla.config import (
    ENCODER_KINDS,
    AgentConfig,
    Config,
    MethodConfig,
    ScanConfig,
    TransferConfig,
)
from darla.stages import STAGE_1_METHOD_KEYS, stage_of_key


def vision_config(cfg: Config) -> Config:
    """``cfg`` as the shared stage-1 job of its group runs it: every key stage 1 reads
    (:func:`darla.stages.stage_of_key`) as in ``cfg``, the rest at defaults. The source domain is
    set to the vision domain and the targets dropped: stage 1 never reads them, and no env lacks
    its vision domain. A test checks that this keeps every key :func:`vision_key` hashes.
    """
    domains = cfg.env.domains
    trained = {
        n: MethodConfig(**{k: getattr(m, k) for k in STAGE_1_METHOD_KEYS})
        for n, m in cfg.methods.items() if m.encoder not in ENCODER_KINDS
    }
    return replace(
        cfg, name="vision", runs_dir=".", agent=AgentConfig(), transfer=TransferConfig(), scan=ScanConfig(),
        methods=trained, env=replace(cfg.env, domains=replace(domains, source=domains.vision, targets={})),
    )


def stage_1_inputs(cfg: Config) -> dict[str, Any]:
    """Dotted key → value of every key of ``cfg`` that stage 1 reads (:func:`darla.stages.stage_of_key`)."""
    raw = cfg.to_dict()
    return {k: v for k, v in _flat(raw).items() if stage_of_key(k, raw, raw) == "vision"}


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

