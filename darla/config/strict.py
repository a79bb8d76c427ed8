"""Checking raw config data against the schema: types, bounds, unknown keys with "did you mean".

:func:`build_dataclass` turns a mapping into a schema dataclass; :func:`check_kwargs` checks the
model- and algorithm-specific settings against the constructor signature of the named class
(``vision: {model: beta_vae, beta: 4.0}`` accepts ``beta`` because ``BetaVAE.__init__`` takes it,
and rejects ``gamma`` with the list of keys it does take). Every problem raises a
:class:`ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Union

from darla.errors import UserError


class ConfigError(UserError, ValueError):
    """A config problem, reported as one line: ``<file>: <dotted.key>: <what is wrong>``; exit 2."""

    exit_code = 2
    label = "config error"

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + message)


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant (None when none is close): every "did you mean"."""
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(key: str, valid: Sequence[str]) -> str:
    close = closest(key, valid)
    if close:
        return f"unknown key (did you mean {close!r}?)"
    return f"unknown key; valid keys: {', '.join(sorted(valid))}"


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check_value(value: Any, tp: Any, source: str, key: str, meta: Mapping[str, Any]) -> Any:
    """Return ``value`` converted to ``tp`` or raise a ConfigError naming key and value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    bad = lambda what: ConfigError(source, key, f"{what}, got {value!r}")  # noqa: E731

    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(value, a, source, key, meta)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:  # Optional[X]: X's own message is the useful one
            raise errors[0]
        names = [_type_name(a) for a in args if a is not type(None)]
        raise bad(f"expected {' or '.join(names)}" + (" or null" if type(None) in args else ""))
    if origin is Literal:
        if value not in args:
            raise bad(f"must be one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise bad(f"expected a list of {_type_name(args[0])}")
        return [_check_value(v, args[0], source, f"{key}[{i}]", {}) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise bad("expected a mapping")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(source, f"{key}.{k}", "keys must be strings")
            out[k] = _check_value(v, args[1], source, f"{key}.{k}", {}) if args[1] is not Any else v
        return out
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):  # e.g. the values of methods: {name: MethodConfig}
        return build_dataclass(tp, value, source, key)[0]
    if tp is bool:
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("expected an integer")
    elif tp is float:
        if isinstance(value, str):
            # PyYAML reads 1e-4 (no dot) as a string; say so rather than "expected a number".
            try:
                number = float(value)
            except ValueError:
                raise bad("expected a number") from None
            if number != number or number in (float("inf"), float("-inf")):  # 'nan', 'inf': YAML text
                raise bad("expected a finite number")
            raise bad("expected a number (YAML reads '1e-4' as text: write 1.0e-4)")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("expected a number")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("expected a finite number")
    elif tp is str:
        if not isinstance(value, str):
            raise bad("expected a string")
        if not value:
            raise bad("must not be empty")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("exclusive_min") and value <= lo)):
        raise bad(f"must be {'>' if meta.get('exclusive_min') else '≥'} {lo}")
    if hi is not None and value > hi:
        raise bad(f"must be ≤ {hi}")
    return value


def build_dataclass(cls: type, raw: Any, source: str, prefix: str, extra_ok: bool = False) -> tuple[Any, dict]:
    """Build dataclass ``cls`` from mapping ``raw``. Returns (instance, leftover keys if extra_ok)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, prefix or "(top level)", f"expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    # With extra_ok (vision:), model params are written flat, so "params" is not a YAML key there.
    fields = {f.name: f for f in dataclasses.fields(cls) if not (extra_ok and f.name == "params")}
    kwargs: dict[str, Any] = {}
    leftover: dict[str, Any] = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in fields:
            if extra_ok:
                leftover[k] = v
                continue
            raise ConfigError(source, key, did_you_mean(str(k), list(fields)))
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = build_dataclass(tp, v, source, key)[0]
        else:
            kwargs[k] = _check_value(v, tp, source, key, fields[k].metadata)
    return cls(**kwargs), leftover


def _signature_params(cls: type, skip: set[str]) -> dict[str, inspect.Parameter]:
    params = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in params:
                continue
            params[p.name] = p
        if not any(p.kind == p.VAR_KEYWORD for p in inspect.signature(klass.__init__).parameters.values()):
            break
    return params


def _annotation(cls: type, name: str) -> Any:
    """The resolved annotation of ``cls.__init__``'s argument ``name`` (None if it cannot be resolved).

    Resolved one argument at a time: ``typing.get_type_hints`` fails on the whole signature when
    one name is imported only for type checking (SB3's ``VecEnv``).
    """
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        p = inspect.signature(klass.__init__).parameters.get(name)
        if p is None:
            continue
        ann = p.annotation
        if isinstance(ann, str):
            try:
                ann = eval(ann, vars(sys.modules[klass.__module__]))  # noqa: S307 (an annotation of installed code)
            except Exception:  # noqa: BLE001
                return None
        return None if ann is inspect.Parameter.empty else ann
    return None


def _yaml_arms(ann: Any) -> list[Any]:
    """The parts of a type a YAML value can be: classes, callables and objects cannot come from a config."""
    origin = typing.get_origin(ann)
    if origin in (Union, types.UnionType):
        return [arm for a in typing.get_args(ann) for arm in _yaml_arms(a)]
    if ann is Any or ann in (bool, int, float, str, type(None), dict, list) or origin in (dict, list, tuple):
        return [ann]
    return []


def _arm_name(arm: Any) -> str:
    origin = typing.get_origin(arm)
    if arm is type(None):
        return "null"
    if arm is dict or origin is dict:
        return "a mapping"
    if arm is list or origin in (list, tuple):
        return "a list" if origin is not tuple else f"a list of {len(typing.get_args(arm))}"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(arm, str(arm))


def _check_annotated(value: Any, ann: Any, source: str, key: str) -> Any:
    """Check a YAML value against an SB3 annotation; only its YAML-representable parts accept anything."""
    arms = _yaml_arms(ann)
    if value is None and type(None) in arms:
        return None
    errors: list[ConfigError] = []
    for arm in arms:
        origin = typing.get_origin(arm)
        if arm is Any:
            return value
        if arm in (bool, int, float, str):
            try:
                return _check_value(value, arm, source, key, {})
            except ConfigError as e:
                errors.append(e)
        elif (arm is dict or origin is dict) and isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        elif (arm is list or origin is list) and isinstance(value, list):
            return value
        elif origin is tuple and isinstance(value, list) and len(value) == len(typing.get_args(arm)):
            try:
                return [_check_value(v, a, source, f"{key}[{i}]", {}) for i, (v, a) in enumerate(zip(value, typing.get_args(arm)))]
            except ConfigError as e:
                errors.append(e)
    real = [a for a in arms if a is not type(None)]
    if not arms:
        raise ConfigError(source, key, f"SB3 takes a Python object here ({_type_name(ann)}), which a config cannot give; "
                                       f"remove the key (got {value!r})")
    if not real:
        raise ConfigError(source, key, f"only null here: SB3 takes a Python object ({_type_name(ann)}), which a config cannot give; got {value!r}")
    if len(real) == 1 and errors:
        raise errors[0]
    raise ConfigError(source, key, f"expected {' or '.join(_arm_name(a) for a in arms)}, got {value!r}")


def check_kwargs(
    raw: Mapping[str, Any], cls: type, skip: set[str], source: str, prefix: str, what: str, annotated: bool = False,
) -> dict[str, Any]:
    """Check keyword arguments against ``cls.__init__``: names, and types where a default shows one.

    ``annotated`` (SB3 classes): types from the signature's annotations, so an argument whose
    default is None (``target_kl``) or of another type than it may be (``ent_coef: 'auto'``) is
    checked too.
    """
    params = _signature_params(cls, skip)
    out = {}
    for k, v in raw.items():
        key = f"{prefix}.{k}"
        if k not in params:
            close = closest(str(k), params)
            hint = f"did you mean {close!r}?" if close else f"{what} takes: {', '.join(sorted(params))}"
            raise ConfigError(source, key, f"unknown key for {what} ({hint})")
        default = params[k].default
        ann = _annotation(cls, k) if annotated else None
        if ann is not None and _yaml_arms(ann) != [Any]:
            v = _check_annotated(v, ann, source, key)
        elif isinstance(default, bool):
            v = _check_value(v, bool, source, key, {})
        elif isinstance(default, float):
            v = _check_value(v, float, source, key, {})
        elif isinstance(default, int):
            v = _check_value(v, int, source, key, {})
        elif isinstance(default, str) and not isinstance(v, str):
            raise ConfigError(source, key, f"expected a string, got {v!r}")
        out[k] = v
    return out


def set_dotted(raw: dict, dotted: str, value: Any) -> str | None:
    """``raw[a][b][c] = value`` for ``"a.b.c"``, making missing mappings on the way. Returns None,
    or (setting nothing further) the dotted prefix whose value is not a mapping."""
    node = raw
    parts = dotted.split(".")
    for i, p in enumerate(parts[:-1]):
        nxt = node.get(p)
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            return ".".join(parts[: i + 1])
        node = nxt
    node[parts[-1]] = value
    return None


def unknown_name(name: str, valid: Mapping[str, Any], what: str) -> str:
    """``unknown <what> 'x' (did you mean 'y'?); choose from …``: a registry name that is not there."""
    close = closest(name, valid)
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; choose from {', '.join(sorted(valid))}"

