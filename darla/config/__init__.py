"""Strict YAML configs: a bounded safe YAML load → frozen dataclasses, every key and value checked.

Errors name the file and the dotted key (``configs/x.yaml: vision.betta: unknown key (did you
mean 'beta'?)``). ``--set vision.beta=4.0`` overrides are parsed as YAML scalars and applied to
the raw mapping *before* validation, so they go through exactly the same checks.

The package, in the order a config goes through it:

- :mod:`~darla.config.yamlfile` reads the file, strictly and within bounds;
- :mod:`~darla.config.schema` holds the dataclasses a config becomes;
- :mod:`~darla.config.strict` checks raw data against them (types, bounds, "did you mean");
- :mod:`~darla.config.checks` checks what needs the registries, SB3 or the machine;
- this module loads (file or mapping, plus overrides), dumps and diffs configs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from darla.config.checks import (
    check_agent,
    check_agent_builds,
    check_env,
    check_methods,
    check_metrics,
    check_models_build,
    check_scan,
    check_seed_ranges,
    check_sizes,
    check_transitions,
    check_vision,
    check_vision_checkpoint,
    external_env_checked,
    register_external_env,
    safe_name,
)
from darla.config.schema import (
    ENCODER_KINDS,
    SCAN_ABLATIONS,
    AgentConfig,
    Config,
    DAEConfig,
    DomainsConfig,
    EnvConfig,
    ExternalEnvConfig,
    MethodConfig,
    MetricsConfig,
    ScanConfig,
    TransferConfig,
    VisionConfig,
)
from darla.config.strict import ConfigError, build_dataclass, closest, did_you_mean, set_dotted
from darla.config.yamlfile import load_yaml, load_yaml_text

__all__ = [
    # the schema
    "Config", "EnvConfig", "DomainsConfig", "ExternalEnvConfig", "VisionConfig", "DAEConfig", "AgentConfig",
    "MethodConfig", "TransferConfig", "MetricsConfig", "ScanConfig", "ENCODER_KINDS", "SCAN_ABLATIONS",
    # loading, dumping, comparing
    "ConfigError", "load_config", "config_from_dict", "parse_override", "dump_config", "diff_configs", "read_run_config",
    "load_yaml", "load_yaml_text", "register_external_env",
    # helpers other modules share: names, typos, dotted keys
    "safe_name", "closest", "did_you_mean", "set_dotted",
]


_EXPONENT_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+")
"""Numbers PyYAML reads as text (YAML 1.1 wants a dot: ``1.0e-4``) that Python and YAML 1.2 read
as floats."""


def _exponents_as_numbers(value: Any) -> Any:
    if isinstance(value, str) and _EXPONENT_TEXT.fullmatch(value):
        return float(value)
    if isinstance(value, list):
        return [_exponents_as_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _exponents_as_numbers(v) for k, v in value.items()}
    return value


def parse_override(text: str) -> tuple[str, Any]:
    """``"vision.beta=4.0"`` → ("vision.beta", 4.0); the value is parsed as a YAML scalar.

    Unlike in a file, ``--set vision.lr=3e-4`` is the number 3e-4: on a command line it is what
    everyone types, and a file's text is kept as it was written while an override is not.
    """
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. --set vision.beta=4.0")
    key, _, val = text.partition("=")
    try:
        return key.strip(), _exponents_as_numbers(load_yaml_text(val, "--set")) if val.strip() else None
    except ConfigError as e:
        raise ConfigError("--set", key.strip(), f"cannot parse value {val!r}: {e.message}") from None


def _deepcopy(x: Any) -> Any:
    """A copy of plain YAML data, so that overrides never change the caller's mapping."""
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def config_from_dict(
    raw: Any, source: str = "<config>", overrides: Sequence[str] = (), *, check_build: bool = True, check_files: bool = True,
) -> Config:
    """Validate a raw mapping (as from YAML) plus ``KEY=VALUE`` overrides into a :class:`Config`.

    ``check_build``: also build each method's SB3 algorithm and policy as stage 2 will (tens of
    ms); ``check_files``: also read ``vision.checkpoint`` (a run's own config.yaml, read back for
    a report, is checked without both: its stages already ran).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, "", f"the top level must be a mapping, got {type(raw).__name__}")
    raw = _deepcopy(raw)
    set_keys = []
    for ov in overrides:
        k, v = parse_override(ov)
        if not all(k.split(".")):
            raise ConfigError(source + " (--set)", k, "malformed override key")
        blocked = set_dotted(raw, k, v)
        if blocked is not None:
            raise ConfigError(source + " (--set)", blocked, "is not a mapping, cannot set a key inside it")
        set_keys.append(k)
    try:
        return _validate(raw, source, check_build=check_build, check_files=check_files)
    except ConfigError as e:
        # a bad value given on the command line is looked for there, not in the file
        if e.source == source and any(e.key == k or e.key.startswith(k + ".") for k in set_keys):
            raise ConfigError(source + " (--set)", e.key, e.message) from None
        raise


def _validate(raw: dict[str, Any], source: str, *, check_build: bool, check_files: bool) -> Config:
    vision_raw = raw.get("vision") or {}
    if not isinstance(vision_raw, dict):
        raise ConfigError(source, "vision", f"expected a mapping, got {vision_raw!r}")
    raw_no_vision = {k: v for k, v in raw.items() if k != "vision"}
    cfg, _ = build_dataclass(Config, raw_no_vision, source, "")
    vision, extra = build_dataclass(VisionConfig, vision_raw, source, "vision", extra_ok=True)
    if "params" in vision_raw:
        raise ConfigError(source, "vision.params", "write model parameters directly under vision:")

    vision = check_vision(vision, extra, source)
    check_agent(cfg.agent, source)
    check_seed_ranges(cfg.agent, vision, source)
    with external_env_checked(cfg.env, source):  # registered for good only by register_external_env
        check_env(cfg, vision, source)
        check_transitions(cfg, vision, source)
        check_metrics(cfg.metrics, source)
        check_scan(dataclasses.replace(cfg, vision=vision), source)
        if not safe_name(cfg.name):
            raise ConfigError(source, "name", f"use letters, digits, '-', '_' and '.', got {cfg.name!r}")
        methods = check_methods(cfg, vision, source)
        cfg = dataclasses.replace(cfg, vision=vision, methods=methods)
        check_sizes(cfg, source)
        if check_build:
            check_models_build(cfg, source)
        if check_build and vision.data == "env":
            check_agent_builds(cfg, source)
    if check_files and vision.checkpoint:
        check_vision_checkpoint(cfg, source)
    return cfg


def load_config(path: str | Path, overrides: Sequence[str] = (), *, check_build: bool = True, check_files: bool = True) -> Config:
    """Read and validate a YAML config file. Every problem raises :class:`ConfigError`."""
    raw = load_yaml(path)
    if raw is None or raw == {}:  # every default is a run nobody asked for
        raise ConfigError(str(path), "", "the config is empty; write the settings of the run (see configs/quick.yaml)")
    return config_from_dict(raw, str(path), overrides, check_build=check_build, check_files=check_files)


def dump_config(cfg: Config) -> str:
    """The config as YAML, in the schema's key order: what a run directory's config.yaml holds."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def read_run_config(path: str | Path) -> dict[str, Any]:
    """A run directory's ``config.yaml`` as a plain dict, with each setting darla added after the
    run was made (absent from the file) at its default.

    A re-run compares this with the config it is given, so upgrading darla does not make a run's
    own config read as changed and stop it from resuming. The premise is darla's rule for a new
    setting: its default does what the code did before it. ``vision.fused_adam`` is the known
    exception (the fused kernel came first, the key after it), so a run made before the fused
    kernel reads as ``fused_adam: true``. A file the current schema cannot read is returned as
    written, and its differences are then reported key by key.
    """
    old = load_yaml(path) or {}
    try:
        full = yaml.safe_load(dump_config(config_from_dict(old, str(path), check_build=False, check_files=False)))
    except Exception:  # noqa: BLE001 (any reason it does not load: compare it as written)
        return old
    return _with_absent(old, full) if isinstance(old, dict) else old


def _with_absent(old: dict[str, Any], full: dict[str, Any]) -> dict[str, Any]:
    """``old`` with every key of ``full`` that it lacks, at any depth."""
    out = dict(old)
    for k, v in full.items():
        if k not in old:
            out[k] = v
        elif isinstance(old[k], dict) and isinstance(v, dict):
            out[k] = _with_absent(old[k], v)
    return out


def diff_configs(a: Mapping[str, Any], b: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}.{k}" if prefix else k
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_configs(va, vb, key)
        elif va != vb:
            out.append(key)
    return out
