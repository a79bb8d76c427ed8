"""Strict YAML configs: a bounded safe YAML load → frozen dataclasses, every key and value checked.

Errors name the file and the dotted key (``configs/x.yaml: vision.betta: unknown key (did you
mean 'beta'?)``). ``--set vision.beta=4.0`` overrides are parsed as YAML scalars and applied to
the raw mapping *before* validation, so they go through exactly the same checks.

Model- and algorithm-specific settings are checked against the constructor signature of the
named class: ``vision: {model: beta_vae, beta: 4.0}`` accepts ``beta`` because
``BetaVAE.__init__`` takes it, and rejects ``gamma`` with the list of keys it does take.

:func:`load_yaml` is the one reader of config and sweep files. It is ``yaml.SafeLoader`` made
strict and bounded: a duplicate key is an error (not "last one wins"), a date stays a string,
tags beyond plain data (``!!binary``, ``!!set``, ``!!timestamp``) are refused, and the nesting
depth, the node count and the text size *after alias expansion* are capped, so an alias bomb
("billion laughs") or 100k-deep brackets are refused in milliseconds, before any key is checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from darla.errors import UserError


class ConfigError(UserError, ValueError):
    """A config problem, reported as one line: ``<file>: <dotted.key>: <what is wrong>``; exit 2."""

    exit_code = 2
    label = "config error"

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source, self.key, self.message = source, key, message
        where = f"{source}: {key}: " if key else f"{source}: "
        super().__init__(where + message)


def _bounds(min: float | None = None, max: float | None = None, **kw: Any) -> dict[str, Any]:
    return {"min": min, "max": max, **kw}


# ---------------------------------------------------------------------------------------------
# The schema. Every field carries its documentation in ``metadata["doc"]``.
# ---------------------------------------------------------------------------------------------
DomainSpec = str | dict[str, list[int]]


@dataclass(frozen=True)
class DomainsConfig:
    vision: DomainSpec = field(default="vision", metadata={"doc": "frames the vision model sees"})
    source: DomainSpec = field(default="source", metadata={"doc": "where the policy is trained"})
    targets: dict[str, DomainSpec] = field(
        default_factory=lambda: {"target_floor_object": "target_floor_object"},
        metadata={"doc": "name → domain preset or {factor: [values]}; zero-shot evaluation only"},
    )


@dataclass(frozen=True)
class ExternalEnvConfig:
    """Any pixel gymnasium env, given colour domains by :mod:`envs.recolour` (gym_id null: none)."""

    gym_id: str | None = field(default=None, metadata={"doc": "e.g. CarRacing-v3, or minigrid:MiniGrid-Empty-8x8-v0 (module:id imports the module)"})
    preset: str = field(default="hue_v1", metadata={"doc": "recolour preset (envs.recolour.PRESETS)"})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"doc": "gymnasium.make kwargs of the base env"})


@dataclass(frozen=True)
class EnvConfig:
    name: str = field(default="seek_avoid", metadata={"doc": "env registry name (darla envs), or the name given to env.external"})
    size: int = field(default=64, metadata={"doc": "frame side in pixels", **_bounds(16, 256)})
    max_steps: int = field(default=100, metadata={"doc": "episode time limit", **_bounds(1)})
    domains: DomainsConfig = field(default_factory=DomainsConfig)
    external: ExternalEnvConfig = field(default_factory=ExternalEnvConfig)


@dataclass(frozen=True)
class DAEConfig:
    """The DAE trained first when ``vision.model`` needs one (β-VAE-DAE)."""

    steps: int = field(default=2000, metadata=_bounds(1))
    lr: float | None = field(default=None, metadata=_bounds(0.0, exclusive_min=True))
    params: dict[str, Any] = field(default_factory=dict, metadata={"doc": "DAE constructor kwargs"})


@dataclass(frozen=True)
class VisionConfig:
    model: str = field(default="beta_vae", metadata={"doc": "vision registry name"})
    latent_dim: int = field(default=10, metadata=_bounds(1, 512))
    n_frames: int = field(default=10_000, metadata={"doc": "random-policy frames", **_bounds(64)})
    episode_steps: int | None = field(
        default=None,
        metadata={"doc": "time limit of the random-policy episodes that collect the frames (None: env.max_steps); "
                         "shorter episodes show more scenes and object placements for the same n_frames", **_bounds(1)},
    )
    steps: int = field(default=5_000, metadata=_bounds(1))
    batch_size: int = field(default=64, metadata=_bounds(1))
    lr: float | None = field(default=None, metadata={"doc": "None → the model's default", **_bounds(0.0, exclusive_min=True)})
    checkpoint_every: int = field(default=1000, metadata=_bounds(1))
    log_every: int = field(default=50, metadata=_bounds(1))
    amp: bool = field(default=False, metadata={"doc": "bf16 autocast on CUDA; measured slower than fp32 for these nets on an H100"})
    compile: bool = False
    cuda_graph: bool = field(
        default=False,
        metadata={"doc": "replay stage 1's training step as one CUDA graph (CUDA only; models it cannot capture train eagerly)"},
    )
    checkpoint: str | None = field(default=None, metadata={"doc": "use this trained model.pt instead of training"})
    data: Literal["env", "dsprites"] = field(
        default="env",
        metadata={"doc": "env: random-policy frames of env.name; dsprites: the procedural dSprites replica "
                         "(stage 1 only: `darla vision train`, to compare metrics with published numbers)"},
    )
    select: Literal["none", "udr"] = field(default="none", metadata={"doc": "udr: train one model per vision.seeds, keep the best by UDR"})
    seeds: list[int] = field(default_factory=list, metadata={"doc": "candidate seeds for select: udr (≥ 2)"})
    dae: DAEConfig = field(default_factory=DAEConfig)
    #: Model-specific constructor kwargs (e.g. ``beta``), written flat in YAML under ``vision:``.
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    algo: str = field(default="ppo", metadata={"doc": "ppo | a2c | dqn | sac"})
    total_timesteps: int = field(default=20_000, metadata=_bounds(1))
    n_envs: int = field(default=8, metadata=_bounds(1, 256))
    seeds: list[int] = field(default_factory=lambda: [0])
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict, metadata={"doc": "SB3 constructor kwargs"})
    checkpoint_every: int = field(default=10_000, metadata={"doc": "timesteps between resume checkpoints", **_bounds(1)})
    workers: int = field(default=1, metadata={"doc": "(method, seed) runs trained at once, each in its own process", **_bounds(1, 64)})
    eval_every: int = field(default=0, metadata={"doc": "timesteps between source-domain evaluations (0: none)", **_bounds(0)})
    eval_episodes: int = field(default=10, metadata={"doc": "episodes per source evaluation (fixed seeds)", **_bounds(1, 10_000)})
    select: Literal["last", "best_source"] = field(
        default="last",
        metadata={"doc": "the policy transfer evaluates: the last, or the best by source evaluations (never targets)"},
    )
    log_targets: bool = field(
        default=False, metadata={"doc": "also log target-domain returns at each evaluation (TensorBoard transfer/<domain>/); never used for selection"},
    )


#: ``methods.<name>.encoder`` values other than a vision registry name.
ENCODER_KINDS = ("vision", "pixels")


@dataclass(frozen=True)
class MethodConfig:
    """One way of seeing, compared with the others on the same protocol (stages 2 and 3)."""

    encoder: str = field(
        default="vision",
        metadata={"doc": "vision: stage 1's model (vision:), frozen; pixels: the policy learns a conv encoder "
                         "from scratch; a vision registry name: another frozen encoder trained in stage 1 on the "
                         "same frames with vision's settings and these params"},
    )
    params: dict[str, Any] = field(default_factory=dict, metadata={"doc": "constructor kwargs of a registry-name encoder"})
    finetune: bool = field(default=False, metadata={"doc": "DARLA_FT: the vision encoder inside the policy, trained by RL"})
    augment: Literal["none", "colour_jitter"] = field(
        default="none", metadata={"doc": "RAD-style colour jitter of update batches (pixel-input methods only)"},
    )
    hyperparams: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of agent.hyperparams"})
    policy_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"doc": "overrides of agent.policy_kwargs"})
    total_timesteps: int | None = field(
        default=None,
        metadata={"doc": "this method's training budget in env steps; null → agent.total_timesteps. For methods "
                         "whose input costs more per step (end-to-end pixels) when they learn in fewer steps; the "
                         "report prints each method's budget", **_bounds(1)},
    )

    @property
    def observe(self) -> str:
        return "pixels" if self.encoder == "pixels" or self.finetune else "latents"


@dataclass(frozen=True)
class TransferConfig:
    n_episodes: int = field(default=20, metadata=_bounds(1, 10_000))
    deterministic: bool = False
    seed_base: int = field(
        default=1_000_000,
        metadata={"doc": "evaluation seeds start here; disjoint per domain (SB3 seeds numpy with it: < 2^32)", **_bounds(0, 2**32 - 1)},
    )


@dataclass(frozen=True)
class MetricsConfig:
    enabled: list[str] = field(default_factory=list, metadata={"doc": "metric names, or ['all']"})
    settings: Literal["fast", "full"] = "fast"
    probe: bool | None = field(
        default=None,
        metadata={"doc": "also an MLP probe per factor (vision.metrics.probe), what a policy can read; "
                         "None: whenever dci is enabled"},
    )


ScanAblation = Literal["reverse_kl", "entangled"]
"""``scan.compare`` choices: SCAN_R (reverse KL) and SCAN on a β = 1 (entangled) vision model."""
SCAN_ABLATIONS: tuple[str, ...] = typing.get_args(ScanAblation)


@dataclass(frozen=True)
class ScanConfig:
    """Optional stage after the vision model: SCAN's symbols grounded in its latents (issue 6)."""

    enabled: bool = field(default=False, metadata={"doc": "run the scan stage in `darla pipeline`"})
    factors: list[str] = field(default_factory=list, metadata={"doc": "scene factors that get words; [] → every scene factor"})
    compare: list[ScanAblation] = field(
        default_factory=list,
        metadata={"doc": "ablations trained beside SCAN: reverse_kl (SCAN_R), entangled (SCAN on a β = 1 vision model)"},
    )
    steps: int = field(default=2000, metadata={"doc": "SCAN optimisation steps", **_bounds(1)})
    recombine_steps: int = field(default=1000, metadata={"doc": "recombinator steps (SCAN frozen)", **_bounds(0)})
    batch_size: int = field(default=32, metadata=_bounds(1))
    lr: float = field(default=1e-4, metadata={"doc": "Adam, SCAN and recombinator (paper: 1e-4)", **_bounds(0.0, exclusive_min=True)})
    beta: float = field(default=1.0, metadata={"doc": "weight of KL(q(z_y|y) ‖ N(0, I)) (paper: 1)", **_bounds(0.0)})
    lam: float = field(default=10.0, metadata={"doc": "weight of KL(q(z_x|x) ‖ q(z_y|y)) (paper: 10)", **_bounds(0.0)})
    images_per_concept: int = field(default=10, metadata={"doc": "renders grounding each concept (paper: ≈5–10)", **_bounds(1)})
    n_concepts: int = field(default=100, metadata={"doc": "concepts drawn before the held-out split", **_bounds(2)})
    held_out_fraction: float = field(default=0.2, metadata={"doc": "concepts never trained on, only scored", **_bounds(0.0, 0.9)})
    hidden: list[int] = field(default_factory=lambda: [100, 100], metadata={"doc": "SCAN encoder/decoder MLP widths"})
    recombine_hidden: list[int] = field(default_factory=lambda: [32, 32], metadata={"doc": "recombinator MLP widths"})
    seed: int | None = field(default=None, metadata={"doc": "concepts, renders, init, batches; null → the run's seed", **_bounds(0, 2**63 - 1)})
    eval_samples: int = field(default=32, metadata={"doc": "sym2img samples scored per concept", **_bounds(1)})
    eval_concepts: int = field(default=50, metadata={"doc": "concepts scored per group (train, held-out, recombined)", **_bounds(1)})
    eval_img2sym: int = field(default=500, metadata={"doc": "fresh renders for img2sym accuracy", **_bounds(1)})
    judge_renders: int = field(default=2000, metadata={"doc": "ground-truth renders the factor classifier learns from", **_bounds(50)})


@dataclass(frozen=True)
class Config:
    name: str = "run"
    seed: int = field(default=0, metadata=_bounds(0, 2**63 - 1))
    device: Literal["auto", "cpu", "cuda"] = "auto"
    runs_dir: str = "runs"
    env: EnvConfig = field(default_factory=EnvConfig)
    vision: VisionConfig = field(default_factory=VisionConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    methods: dict[str, MethodConfig] = field(
        default_factory=dict,
        metadata={"doc": "name → method compared in stages 2–3; empty: one method, vision's frozen encoder"},
    )
    scan: ScanConfig = field(default_factory=ScanConfig)

    def timesteps_of(self, method: str) -> int:
        """The env steps that ``method``'s agents train for: its own budget, else agent.total_timesteps."""
        return self.methods[method].total_timesteps or self.agent.total_timesteps

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data, model params written flat under ``vision`` (round-trips)."""
        d = dataclasses.asdict(self)
        params = d["vision"].pop("params")
        d["vision"].update(params)
        return d


# ---------------------------------------------------------------------------------------------
# Reading YAML, bounded
# ---------------------------------------------------------------------------------------------
#: Bounds of a config or sweep file, far above any real one (configs/ hold < 100 lines, depth 5).
MAX_YAML_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
#: Values (scalars, lists, mappings) and scalar characters once every alias is expanded.
MAX_YAML_NODES = 100_000
MAX_YAML_CHARS = 16 << 20
_YAML_DATA_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose scanner refuses nesting beyond :data:`MAX_YAML_DEPTH` as it reads.

    The check must be in the scanner: PyYAML's scanner is quadratic in flow depth (100k nested
    ``[`` take minutes to scan) and its composer recursive (a RecursionError at ~1k levels).
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 (PyYAML's name)
        if self.flow_level >= MAX_YAML_DEPTH:
            raise _TooDeep(self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column: int) -> bool:
        if len(self.indents) >= MAX_YAML_DEPTH:
            raise _TooDeep(self.get_mark())
        return super().add_indent(column)


# A date stays text: a config never means a timestamp, and a datetime breaks JSON and hashing.
_BoundedLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _line(node: Any) -> str:
    return f"line {node.start_mark.line + 1}"


def _check_yaml_nodes(root: Any, source: str) -> None:
    """Bound the expanded size and depth of a composed document; refuse recursive aliases.

    Iterative and memoised per node, so it costs the size of the *file*, not of the expansion
    (an alias is the same node object wherever it appears).
    """
    def children(node: Any) -> list[Any]:
        if isinstance(node, yaml.MappingNode):
            return [n for kv in node.value for n in kv]
        return list(node.value) if isinstance(node, yaml.SequenceNode) else []

    memo: dict[int, tuple[int, int, int]] = {}  # id → (nodes, scalar chars, depth), expanded
    open_: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        nid = id(node)
        if finished:
            open_.discard(nid)
            kids = [memo[id(k)] for k in children(node)]
            nodes = 1 + sum(k[0] for k in kids)
            chars = (len(node.value) if isinstance(node, yaml.ScalarNode) else 0) + sum(k[1] for k in kids)
            depth = 1 + max((k[2] for k in kids), default=0)
            if nodes > MAX_YAML_NODES or chars > MAX_YAML_CHARS:
                what = f"{MAX_YAML_NODES} values" if nodes > MAX_YAML_NODES else f"{MAX_YAML_CHARS >> 20} MiB of text"
                raise ConfigError(source, "", f"the value at {_line(node)} expands to more than {what} once its aliases "
                                              "are expanded (an alias bomb?)")
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(source, "", f"the value at {_line(node)} nests deeper than {MAX_YAML_DEPTH} levels once its aliases are expanded")
            memo[nid] = (nodes, chars, depth)
            continue
        if nid in memo:
            continue
        if nid in open_:
            raise ConfigError(source, "", f"the alias at {_line(node)} refers to a value that contains it (a recursive alias)")
        open_.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in children(node))


def _check_yaml_keys(node: Any, source: str, path: str, seen: set[int]) -> None:
    """Plain data only, and no key twice in one mapping (PyYAML would keep the last silently)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if node.tag not in _YAML_DATA_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(source, path, f"YAML tag {tag} at {_line(node)} is not supported: a config holds strings, "
                                        "numbers, booleans, null, lists and mappings")
    if isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _check_yaml_keys(child, source, f"{path}[{i}]", seen)
    elif isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], Any] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else "?"
            dotted = f"{path}.{name}" if path else name
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if (key.tag, key.value) in first:
                    raise ConfigError(source, dotted, f"duplicate key (at lines {first[key.tag, key.value].start_mark.line + 1} "
                                                      f"and {key.start_mark.line + 1}); write each key once")
                first[key.tag, key.value] = key
            _check_yaml_keys(key, source, dotted, seen)
            _check_yaml_keys(value, source, dotted, seen)


def load_yaml_text(text: str, source: str) -> Any:
    """Parse one YAML document strictly and within bounds (see the module docstring)."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(source, "", f"{len(text)} characters; a config or sweep file is at most {MAX_YAML_BYTES >> 10} KiB")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(node, source)
        _check_yaml_keys(node, source, "", set())
        return loader.construct_document(node)
    except _TooDeep as e:
        raise ConfigError(source, "", f"nesting deeper than {MAX_YAML_DEPTH} levels at line {e.mark.line + 1}, "
                                      f"column {e.mark.column + 1}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(source, "", f"invalid YAML{where}: {problem}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """Read a config or sweep file with :func:`load_yaml_text`; every problem names the file."""
    path = Path(path)
    source = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_YAML_BYTES + 1)  # never more than the bound, whatever the file is
    except FileNotFoundError:
        raise ConfigError(source, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(source, "", f"cannot read: {e}") from None
    return load_yaml_text(text, source)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
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
        return _build(tp, value, source, key)[0]
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


def _build(cls: type, raw: Any, source: str, prefix: str, extra_ok: bool = False) -> tuple[Any, dict]:
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
            kwargs[k] = _build(tp, v, source, key)[0]
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
    import sys

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


def _check_kwargs(
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


def parse_override(text: str) -> tuple[str, Any]:
    """``"vision.beta=4.0"`` → ("vision.beta", 4.0); the value is parsed as a YAML scalar."""
    if "=" not in text:
        raise ConfigError("--set", text, "expected KEY=VALUE, e.g. --set vision.beta=4.0")
    key, _, val = text.partition("=")
    try:
        return key.strip(), load_yaml_text(val, "--set") if val.strip() else None
    except ConfigError as e:
        raise ConfigError("--set", key.strip(), f"cannot parse value {val!r}: {e.message}") from None


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
    for ov in overrides:
        k, v = parse_override(ov)
        if not all(k.split(".")):
            raise ConfigError(source + " (--set)", k, "malformed override key")
        blocked = set_dotted(raw, k, v)
        if blocked is not None:
            raise ConfigError(source + " (--set)", blocked, "is not a mapping, cannot set a key inside it")

    vision_raw = raw.get("vision") or {}
    if not isinstance(vision_raw, dict):
        raise ConfigError(source, "vision", f"expected a mapping, got {vision_raw!r}")
    raw_no_vision = {k: v for k, v in raw.items() if k != "vision"}
    cfg, _ = _build(Config, raw_no_vision, source, "")
    vision, extra = _build(VisionConfig, vision_raw, source, "vision", extra_ok=True)
    if "params" in vision_raw:
        raise ConfigError(source, "vision.params", "write model parameters directly under vision:")

    from vision.registry import VISION_MODELS  # darla is the top layer; the registry is data

    if vision.model not in VISION_MODELS:
        raise ConfigError(source, "vision.model", _unknown_name(vision.model, VISION_MODELS, "vision model"))
    model_cls = VISION_MODELS[vision.model]
    params = _check_kwargs(extra, model_cls, {"self", "obs_shape", "latent_dim"}, source, "vision", f"vision model {vision.model!r}")
    vision = dataclasses.replace(vision, params=params)
    if vision.lr is not None and not model_cls.uses_lr:
        raise ConfigError(source, "vision.lr", f"vision model {vision.model!r} takes its learning rates from its own arguments; remove vision.lr")
    if getattr(model_cls, "requires", None) == "dae":  # β-VAE-DAE: the DAE trained first
        dae_cls = VISION_MODELS["dae"]
        _check_kwargs(vision.dae.params, dae_cls, {"self", "obs_shape"}, source, "vision.dae.params", "vision model 'dae'")
    if vision.select == "udr" and (len(vision.seeds) < 2 or len(set(vision.seeds)) != len(vision.seeds)):
        raise ConfigError(source, "vision.seeds", f"select: udr needs ≥ 2 distinct candidate seeds, got {vision.seeds}")
    if vision.select == "none" and vision.seeds:
        raise ConfigError(source, "vision.seeds", "candidate seeds are only used with vision.select: udr")
    if vision.select == "udr" and vision.checkpoint:
        raise ConfigError(source, "vision.select", "select: udr trains candidates; it cannot be combined with vision.checkpoint")
    if vision.batch_size > vision.n_frames:
        raise ConfigError(source, "vision.batch_size", f"{vision.batch_size} exceeds vision.n_frames ({vision.n_frames})")

    from agents.algos import ALGOS

    agent = cfg.agent
    if agent.algo not in ALGOS:
        raise ConfigError(source, "agent.algo", _unknown_name(agent.algo, ALGOS, "algorithm"))
    _check_kwargs(
        agent.hyperparams, ALGOS[agent.algo], _SB3_OWN,
        source, "agent.hyperparams", f"{agent.algo.upper()}", annotated=True,
    )
    _check_kwargs(agent.policy_kwargs, _policy_class(agent.algo), _POLICY_OWN, source, "agent.policy_kwargs",
                  f"{agent.algo.upper()}'s policy", annotated=True)
    if not agent.seeds:
        raise ConfigError(source, "agent.seeds", "needs at least one seed")
    if len(set(agent.seeds)) != len(agent.seeds):
        raise ConfigError(source, "agent.seeds", f"seeds must be distinct, got {agent.seeds}")
    for i, s in enumerate(agent.seeds):  # SB3 seeds numpy's global RNG with it, which takes 32 bits
        if not 0 <= s < 2**32:
            raise ConfigError(source, f"agent.seeds[{i}]", f"must be in 0 … 2^32 − 1 (SB3 seeds numpy with it), got {s}")
    for i, s in enumerate(vision.seeds):
        if not 0 <= s < 2**63:
            raise ConfigError(source, f"vision.seeds[{i}]", f"must be in 0 … 2^63 − 1, got {s}")

    from envs.registry import ENVS

    env = cfg.env
    if env.external.gym_id:
        _register_external(env, source)
    if env.name not in ENVS:
        raise ConfigError(source, "env.name", _unknown_name(env.name, ENVS, "environment"))
    _check_domains(env, source)
    from envs.registry import has_ground_truth

    if not has_ground_truth(env.name):  # an external env wrapped by envs.recolour: no factor labels
        needs = [
            (bool(cfg.metrics.enabled), "metrics.enabled", "disentanglement metrics"),
            (vision.select == "udr", "vision.select", "UDR selection"),
            (vision.model == "dcign", "vision.model", "DC-IGN's one-factor batches"),
            (cfg.scan.enabled, "scan.enabled", "SCAN's symbols"),
        ]
        for bad, key, what in needs:
            if bad:
                raise ConfigError(source, key, f"{what} need the env's ground-truth factors, and {env.name!r} has none")

    _check_transitions(cfg, vision, source)
    if cfg.metrics.enabled:
        from vision.metrics import METRICS

        for i, m in enumerate(cfg.metrics.enabled):
            if m != "all" and m not in METRICS:
                raise ConfigError(source, f"metrics.enabled[{i}]", _unknown_name(m, METRICS, "metric"))
    _check_scan(dataclasses.replace(cfg, vision=vision), source)
    if not safe_name(cfg.name):
        raise ConfigError(source, "name", f"use letters, digits, '-', '_' and '.', got {cfg.name!r}")
    methods = _check_methods(cfg, vision, source)
    cfg = dataclasses.replace(cfg, vision=vision, methods=methods)
    _check_sizes(cfg, source)
    if check_build and vision.data == "env":
        _check_agents(cfg, source)
    if check_files and vision.checkpoint:
        _check_vision_checkpoint(cfg, source)
    return cfg


def _check_transitions(cfg: Config, vision: VisionConfig, source: str) -> None:
    """A model that learns from (s, a, s') (ICF) needs an env that renders one-step transitions."""
    from envs.transitions import TRANSITION_SOURCES
    from vision.registry import VISION_MODELS

    users = [("vision.model", vision.model)] + [(f"methods.{n}.encoder", m.encoder) for n, m in cfg.methods.items()]
    for key, name in users:
        if getattr(VISION_MODELS.get(name), "learns_from", "frames") != "transitions":
            continue
        if vision.data != "env":
            raise ConfigError(source, "vision.data", f"{name} learns from the env's transitions; vision.data: {vision.data} has no actions")
        if cfg.env.name not in TRANSITION_SOURCES:
            raise ConfigError(
                source, key, f"{name} learns from one-step transitions, which env {cfg.env.name!r} does not render "
                f"(envs that do: {sorted(TRANSITION_SOURCES)})",
            )


_SB3_OWN = {"self", "policy", "env", "seed", "device", "policy_kwargs", "tensorboard_log", "verbose", "_init_setup_model"}


def _check_methods(cfg: Config, vision: VisionConfig, source: str) -> dict[str, MethodConfig]:
    """Validate ``methods``; empty → one method named after vision.model, its frozen encoder."""
    from agents.algos import ALGOS
    from vision.registry import VISION_MODELS

    if not cfg.methods:
        return {vision.model: MethodConfig(encoder="vision")}
    out = {}
    for name, m in cfg.methods.items():
        key = f"methods.{name}"
        if not safe_name(name):
            raise ConfigError(source, key, "method names name directories: use letters, digits, '-', '_' and '.'")
        _check_name(name, source, key, "method", [*cfg.methods])
        if m.encoder not in ENCODER_KINDS and m.encoder not in VISION_MODELS:
            valid = {**{k: None for k in ENCODER_KINDS}, **VISION_MODELS}
            raise ConfigError(source, f"{key}.encoder", _unknown_name(m.encoder, valid, "encoder"))
        params = m.params
        if m.params and m.encoder in ENCODER_KINDS:
            raise ConfigError(source, f"{key}.params", f"params configure a registry-name encoder, not encoder: {m.encoder}")
        if m.encoder in VISION_MODELS:
            params = _check_kwargs(m.params, VISION_MODELS[m.encoder], {"self", "obs_shape", "latent_dim"}, source, f"{key}.params", f"vision model {m.encoder!r}")
        if m.finetune and m.encoder == "pixels":
            raise ConfigError(source, f"{key}.finetune", "finetune starts from a trained encoder; encoder: pixels has none")
        if m.augment != "none" and m.observe != "pixels":
            raise ConfigError(source, f"{key}.augment", "augmentation needs pixel input: use encoder: pixels or finetune: true")
        _check_kwargs(m.hyperparams, ALGOS[cfg.agent.algo], _SB3_OWN, source, f"{key}.hyperparams", cfg.agent.algo.upper(), annotated=True)
        _check_kwargs(m.policy_kwargs, _policy_class(cfg.agent.algo, m.observe), _POLICY_OWN, source, f"{key}.policy_kwargs",
                      f"{cfg.agent.algo.upper()}'s policy", annotated=True)
        out[name] = dataclasses.replace(m, params=params)
    return out


def machine_memory() -> int:
    """Bytes of memory this process can have: physical RAM, or a smaller cgroup (container) limit."""
    import os

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


def _check_sizes(cfg: Config, source: str) -> None:
    """What a run holds in memory at once, against what the machine has: a size that cannot fit is
    refused now, naming its key, not as an allocation traceback (or a swap storm) mid-run."""
    v, s, a = cfg.vision, cfg.scan, cfg.agent
    side = 64 if v.data == "dsprites" else cfg.env.size
    channels = 1 if v.data == "dsprites" else 3
    image = channels * side * side  # one frame, in bytes as uint8
    # dSprites renders float32 before its uint8 copy; env frames are collected as uint8.
    needs = [("vision.n_frames", v.n_frames * image * (5 if v.data == "dsprites" else 1), f"{v.n_frames} frames of {side}×{side}×{channels}"),
             ("vision.batch_size", v.batch_size * image * 4, f"a batch of {v.batch_size} float32 frames")]
    if s.enabled:
        renders = {"scan.judge_renders": s.judge_renders, "scan.eval_img2sym": s.eval_img2sym,
                   "scan.images_per_concept": s.images_per_concept * s.n_concepts, "scan.eval_samples": s.eval_samples * s.eval_concepts}
        needs += [(k, n * image * 4, f"{n} float32 renders") for k, n in renders.items()]
    if v.data == "env":
        from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

        from agents.algos import ALGOS

        off_policy = issubclass(ALGOS[a.algo], OffPolicyAlgorithm)
        for name, m in cfg.methods.items():
            obs = image if m.observe == "pixels" else v.latent_dim * 4  # uint8 frames, float32 latents
            own = {**a.hyperparams, **m.hyperparams}
            where = f"methods.{name}.hyperparams" if m.hyperparams else "agent.hyperparams"
            if off_policy:  # the replay buffer fills up to the steps taken: observations and next observations
                size = min(int(own.get("buffer_size", 1_000_000)), cfg.timesteps_of(name))
                needs.append((f"{where}.buffer_size" if "buffer_size" in own
                               else f"methods.{name}.total_timesteps" if m.total_timesteps else "agent.total_timesteps",
                              2 * size * obs, f"a replay buffer of {size} observations for method {name!r}"))
            else:  # SB3's rollout buffer stores every observation as float32
                n_steps = int(own.get("n_steps", 2048 if a.algo == "ppo" else 5))
                needs.append((f"{where}.n_steps" if "n_steps" in own else "agent.n_envs",
                              n_steps * a.n_envs * (obs if m.observe == "latents" else image * 4),
                              f"a rollout buffer of {n_steps} steps × {a.n_envs} envs for method {name!r}"))
    memory = machine_memory()
    for key, need, what in needs:
        if need > memory:
            raise ConfigError(source, key, f"{what}: {_bytes(need)} in memory, and this machine has {_bytes(memory)}")


_CHECKED: dict[tuple[Any, ...], None] = {}


def _check_vision_checkpoint(cfg: Config, source: str) -> None:
    """``vision.checkpoint`` must be a darla vision checkpoint that fits the config, before frames are collected."""
    from vision.checkpoint import CheckpointError
    from vision.registry import load_checkpoint

    path = Path(cfg.vision.checkpoint)
    expect: dict[str, Any] = {"model": cfg.vision.model, "latent_dim": cfg.vision.latent_dim}
    if cfg.vision.data == "env":
        expect["obs_shape"] = (3, cfg.env.size, cfg.env.size)
    try:
        st = path.stat()
    except OSError:
        raise ConfigError(source, "vision.checkpoint", f"no vision checkpoint at {path}") from None
    memo = (str(path.resolve()), st.st_mtime_ns, st.st_size, tuple(expect.items()))
    if memo in _CHECKED:  # a sweep validates each run: read the file once
        return
    try:
        load_checkpoint(path, expect=expect)
    except CheckpointError as e:
        raise ConfigError(source, "vision.checkpoint", str(e)) from None
    _CHECKED[memo] = None


#: Policy arguments darla sets itself (the spaces, the schedule; a pixel policy's features extractor).
_POLICY_OWN = {"self", "observation_space", "action_space", "lr_schedule"}


def _policy_class(algo: str, observe: str = "latents") -> type:
    from agents.algos import ALGOS

    return ALGOS[algo].policy_aliases["CnnPolicy" if observe == "pixels" else "MlpPolicy"]


def _check_agents(cfg: Config, source: str) -> None:
    """Build every method's algorithm and policy as stage 2 will (SB3 itself, on the env's spaces):
    what only construction reveals (``net_arch: banana``, an SB3 assertion) is refused now, naming
    the key, and not after stage 1 has trained."""
    from agents.train import check_agent_build

    a = cfg.agent
    for name, m in cfg.methods.items():
        arch = {k: cfg.vision.params[k] for k in ("channels", "hidden") if k in cfg.vision.params}
        hyper, policy = {**a.hyperparams, **m.hyperparams}, {**a.policy_kwargs, **m.policy_kwargs}
        freq = hyper.get("train_freq")
        if isinstance(freq, list) and freq[1:] == ["episode"] and a.n_envs > 1:  # SB3 asserts it in learn()
            key = f"methods.{name}.hyperparams.train_freq" if "train_freq" in m.hyperparams else "agent.hyperparams.train_freq"
            raise ConfigError(source, key, f"SB3 trains per episode with one env only; set agent.n_envs: 1 (it is {a.n_envs})")
        problem = check_agent_build(
            cfg.env.name, cfg.env.size, cfg.env.max_steps, a.algo, m.observe, cfg.vision.latent_dim,
            {"latent_dim": cfg.vision.latent_dim, **arch}, hyper, policy, a.n_envs,
        )
        if problem is None:
            continue
        part, arg, message = problem
        where = "hyperparams" if part == "hyperparams" else "policy_kwargs"
        own = m.hyperparams if where == "hyperparams" else m.policy_kwargs
        prefix = f"methods.{name}.{where}" if arg in own or (arg is None and own) else f"agent.{where}"
        raise ConfigError(source, f"{prefix}.{arg}" if arg else prefix, f"SB3 cannot build {a.algo.upper()} with it: {message}")


def _register_external(env: EnvConfig, source: str) -> None:
    """Register ``env.external`` as env ``env.name`` (idempotent: worker processes load the config too)."""
    from envs.recolour import PRESETS, register_recoloured
    from envs.registry import ENVS

    ext = env.external
    if ext.preset not in PRESETS:
        raise ConfigError(source, "env.external.preset", _unknown_name(ext.preset, PRESETS, "recolour preset"))
    known = ENVS.get(env.name)
    if known is not None and known.gym_id != f"darla/recoloured.{env.name}-v0":
        raise ConfigError(source, "env.name", f"{env.name!r} is a built-in env; name the external env otherwise")
    try:
        register_recoloured(env.name, ext.gym_id, ext.preset, base_kwargs=ext.kwargs, replace=True)
    except Exception as e:  # an unknown id, a missing extra, a non-image env: one line, not a traceback
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(source, "env.external.gym_id", f"cannot make {ext.gym_id!r}: {msg}") from None


def _check_domains(env: EnvConfig, source: str) -> None:
    from envs.registry import get_domain

    doms = env.domains
    for name in doms.targets:
        _check_name(name, source, f"env.domains.targets.{name}", "target", [*doms.targets])
    built = {}
    for key, spec in [("vision", doms.vision), ("source", doms.source), *[(f"targets.{k}", v) for k, v in doms.targets.items()]]:
        try:
            built[key] = get_domain(env.name, spec)
        except (KeyError, ValueError) as e:
            msg = e.args[0] if e.args else str(e)
            raise ConfigError(source, f"env.domains.{key}", str(msg)) from None
    if not doms.targets:
        raise ConfigError(source, "env.domains.targets", "name at least one target domain")
    for key, dom in built.items():
        if key.startswith("targets.") and dom.overlaps(built["vision"]):
            raise ConfigError(
                source, f"env.domains.{key}",
                "overlaps the vision domain: target frames would be seen in stage 1 (DARLA's protocol holds targets out)",
            )
        if key.startswith("targets.") and dom.overlaps(built["source"]):
            raise ConfigError(source, f"env.domains.{key}", "overlaps the source domain: it would not test transfer")


def _check_scan(cfg: Config, source: str) -> None:
    """What the schema cannot say: SCAN's words must be scene factors of the env, and it needs them."""
    from envs.registry import get_env_info

    s = cfg.scan
    if cfg.vision.data != "env" and (s.enabled or s.compare):
        raise ConfigError(source, "scan.enabled" if s.enabled else "scan.compare", f"SCAN names the env's scene factors; vision.data: {cfg.vision.data} has none")
    names = {f.name: f for f in get_env_info(cfg.env.name).scene_space.factors}
    for i, name in enumerate(s.factors):
        if name not in names:
            raise ConfigError(source, f"scan.factors[{i}]", _unknown_name(name, names, f"{cfg.env.name} scene factor"))
    for key, values in (("factors", s.factors), ("compare", s.compare)):
        if len(set(values)) != len(values):
            raise ConfigError(source, f"scan.{key}", f"entries must be distinct, got {values}")
    for key, widths in (("hidden", s.hidden), ("recombine_hidden", s.recombine_hidden)):
        for i, w in enumerate(widths):
            if w < 1:
                raise ConfigError(source, f"scan.{key}[{i}]", f"layer widths must be ≥ 1, got {w}")


#: Names the results already use for something else: the source and vision domains, and the
#: step column of evaluations.jsonl. A target or method under one of them would silently take its place.
RESERVED_NAMES = ("source", "vision", "timesteps")


def _check_name(name: str, source: str, key: str, what: str, siblings: Sequence[str]) -> None:
    """Target and method names label rows, columns and directories: distinct, and not reserved."""
    if name.lower() in RESERVED_NAMES:
        raise ConfigError(source, key, f"{what} name {name!r} is reserved: the results already use "
                                       f"{name.lower()!r} for something else ({', '.join(RESERVED_NAMES)} are reserved)")
    same = [o for o in siblings if o != name and o.lower() == name.lower()]
    if same:  # one directory on a case-insensitive filesystem, one row to a reader
        raise ConfigError(source, key, f"{what} names must differ by more than case: {name!r} and {same[0]!r}")


def _unknown_name(name: str, valid: Mapping[str, Any], what: str) -> str:
    close = closest(name, valid)
    hint = f" (did you mean {close!r}?)" if close else ""
    return f"unknown {what} {name!r}{hint}; choose from {', '.join(sorted(valid))}"


def safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and name not in (".", "..")


def _deepcopy(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _deepcopy(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_deepcopy(v) for v in x]
    return x


def load_config(path: str | Path, overrides: Sequence[str] = (), *, check_build: bool = True, check_files: bool = True) -> Config:
    """Read and validate a YAML config file. Every problem raises :class:`ConfigError`."""
    raw = load_yaml(path)
    if raw is None or raw == {}:  # every default is a run nobody asked for
        raise ConfigError(str(path), "", "the config is empty; write the settings of the run (see configs/quick.yaml)")
    return config_from_dict(raw, str(path), overrides, check_build=check_build, check_files=check_files)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


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
