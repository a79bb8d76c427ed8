"""What every stage shares: the log callback, the config's domains, and where a method's files are."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from darla.config import Config
from darla.runs import RunDir
from envs.factors import Domain
from envs.registry import get_domain

Log = Callable[[str], None]


def print_log(msg: str) -> None:
    print(msg, flush=True)


def domains_of(cfg: Config) -> tuple[Domain, Domain, dict[str, Domain]]:
    d = cfg.env.domains
    vision = get_domain(cfg.env.name, d.vision)
    source = get_domain(cfg.env.name, d.source)
    targets = {name: get_domain(cfg.env.name, spec) for name, spec in d.targets.items()}
    return vision, source, targets


def encoder_path(run: RunDir, cfg: Config, method: str) -> Path | None:
    """The vision checkpoint a method starts from (None for pixels)."""
    enc = cfg.methods[method].encoder
    if enc == "pixels":
        return None
    return run.vision_model() if enc == "vision" else run.vision_model(method)
