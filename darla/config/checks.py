"""Checks beyond the schema: names against the registries (vision models, algorithms, envs,
metrics), settings against the constructors they go to, sizes against the machine's memory, and
SB3 building each method as stage 2 will. Every problem raises a :class:`ConfigError` naming the
file and the dotted key, before any stage runs.

The registries are imported inside the functions: reading a config should not cost importing
torch and SB3 until a check needs them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from darla.config.schema import (
    ENCODER_KINDS,
    AgentConfig,
    Config,
    EnvConfig,
    MethodConfig,
    MetricsConfig,
    VisionConfig,
)
from darla.config.strict import ConfigError, check_kwargs, unknown_name


def _model_params(raw: dict[str, Any], model_cls: type, source: str, prefix: str, what: str) -> dict[str, Any]:
    """A vision model's settings checked against its constructor. The stage supplies
    ``obs_shape`` and ``latent_dim``; the arguments the model marks as not settings (objects that
    code passes in, such as β-VAE-DAE's trained ``dae``) are refused by name, since YAML cannot
    hold them and the run would fail only when it built the model."""
    for k in getattr(model_cls, "not_settings", ()):
        if k in raw:
            hint = "; its DAE is trained from vision.dae, or read from dae_checkpoint" if k.startswith("dae") else ""
            raise ConfigError(source, f"{prefix}.{k}", f"not a setting of {what}: code passes it in{hint}")
    return check_kwargs(raw, model_cls, {"self", "obs_shape", "latent_dim"}, source, prefix, what)


def check_vision(vision: VisionConfig, params: dict[str, Any], source: str) -> VisionConfig:
    """``vision`` with its model's own settings (``params``, written flat under ``vision:``) checked
    against the model's constructor, and the settings that only make sense together."""
    from vision.registry import VISION_MODELS  # darla is the top layer; the registry is data

    if vision.model not in VISION_MODELS:
        raise ConfigError(source, "vision.model", unknown_name(vision.model, VISION_MODELS, "vision model"))
    model_cls = VISION_MODELS[vision.model]
    params = _model_params(params, model_cls, source, "vision", f"vision model {vision.model!r}")
    vision = dataclasses.replace(vision, params=params)
    if vision.lr is not None and not model_cls.uses_lr:
        raise ConfigError(source, "vision.lr", f"vision model {vision.model!r} takes its learning rates from its own arguments; remove vision.lr")
    if getattr(model_cls, "requires", None) == "dae":  # β-VAE-DAE: the DAE trained first
        dae_cls = VISION_MODELS["dae"]
        check_kwargs(vision.dae.params, dae_cls, {"self", "obs_shape"}, source, "vision.dae.params", "vision model 'dae'")
    if vision.select == "udr" and (len(vision.seeds) < 2 or len(set(vision.seeds)) != len(vision.seeds)):
        raise ConfigError(source, "vision.seeds", f"select: udr needs ≥ 2 distinct candidate seeds, got {vision.seeds}")
    if vision.select == "none" and vision.seeds:
        raise ConfigError(source, "vision.seeds", "candidate seeds are only used with vision.select: udr")
    if vision.select == "udr" and vision.init_seed is not None:
        raise ConfigError(source, "vision.init_seed", "select: udr takes its candidates' seeds from vision.seeds")
    if vision.select == "udr" and vision.checkpoint:
        raise ConfigError(source, "vision.select", "select: udr trains candidates; it cannot be combined with vision.checkpoint")
    if vision.batch_size > vision.n_frames:
        raise ConfigError(source, "vision.batch_size", f"{vision.batch_size} exceeds vision.n_frames ({vision.n_frames})")
    return vision


def check_agent(agent: AgentConfig, source: str) -> None:
    """The algorithm is known, and its settings and policy settings are ones SB3 takes."""
    from agents.algos import ALGOS

    if agent.algo not in ALGOS:
        raise ConfigError(source, "agent.algo", unknown_name(agent.algo, ALGOS, "algorithm"))
    check_kwargs(
        agent.hyperparams, ALGOS[agent.algo], _SB3_OWN,
        source, "agent.hyperparams", f"{agent.algo.upper()}", annotated=True,
    )
    check_kwargs(agent.policy_kwargs, _policy_class(agent.algo), _POLICY_OWN, source, "agent.policy_kwargs",
                 f"{agent.algo.upper()}'s policy", annotated=True)
    if not agent.seeds:
        raise ConfigError(source, "agent.seeds", "needs at least one seed")
    if len(set(agent.seeds)) != len(agent.seeds):
        raise ConfigError(source, "agent.seeds", f"seeds must be distinct, got {agent.seeds}")


def check_seed_ranges(agent: AgentConfig, vision: VisionConfig, source: str) -> None:
    """Every seed fits the generator that takes it."""
    for i, s in enumerate(agent.seeds):  # SB3 seeds numpy's global RNG with it, which takes 32 bits
        if not 0 <= s < 2**32:
            raise ConfigError(source, f"agent.seeds[{i}]", f"must be in 0 … 2^32 − 1 (SB3 seeds numpy with it), got {s}")
    for i, s in enumerate(vision.seeds):
        if not 0 <= s < 2**63:
            raise ConfigError(source, f"vision.seeds[{i}]", f"must be in 0 … 2^63 − 1, got {s}")


def check_env(cfg: Config, vision: VisionConfig, source: str) -> None:
    """The env exists (``env.external`` inside :func:`external_env_checked`), its domains are
    valid and keep DARLA's protocol, and it has the ground-truth factors the config asks of it."""
    from envs.registry import ENVS, has_ground_truth

    env = cfg.env
    if env.name not in ENVS:
        raise ConfigError(source, "env.name", unknown_name(env.name, ENVS, "environment"))
    _check_domains(env, source)
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


def check_metrics(metrics: MetricsConfig, source: str) -> None:
    if metrics.enabled:
        from vision.metrics import METRICS

        for i, m in enumerate(metrics.enabled):
            if m != "all" and m not in METRICS:
                raise ConfigError(source, f"metrics.enabled[{i}]", unknown_name(m, METRICS, "metric"))


def check_transitions(cfg: Config, vision: VisionConfig, source: str) -> None:
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


def check_methods(cfg: Config, vision: VisionConfig, source: str) -> dict[str, MethodConfig]:
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
            raise ConfigError(source, f"{key}.encoder", unknown_name(m.encoder, valid, "encoder"))
        params = m.params
        if m.params and m.encoder in ENCODER_KINDS:
            raise ConfigError(source, f"{key}.params", f"params configure a registry-name encoder, not encoder: {m.encoder}")
        if m.encoder in VISION_MODELS:
            params = _model_params(m.params, VISION_MODELS[m.encoder], source, f"{key}.params", f"vision model {m.encoder!r}")
        if m.finetune and m.encoder == "pixels":
            raise ConfigError(source, f"{key}.finetune", "finetune starts from a trained encoder; encoder: pixels has none")
        if m.augment != "none" and m.observe != "pixels":
            raise ConfigError(source, f"{key}.augment", "augmentation needs pixel input: use encoder: pixels or finetune: true")
        check_kwargs(m.hyperparams, ALGOS[cfg.agent.algo], _SB3_OWN, source, f"{key}.hyperparams", cfg.agent.algo.upper(), annotated=True)
        check_kwargs(m.policy_kwargs, _policy_class(cfg.agent.algo, m.observe), _POLICY_OWN, source, f"{key}.policy_kwargs",
                      f"{cfg.agent.algo.upper()}'s policy", annotated=True)
        out[name] = dataclasses.replace(m, params=params)
    return out


def machine_memory() -> int:
    """Bytes of memory this process can have: physical RAM, or a smaller cgroup (container) limit."""
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


def check_sizes(cfg: Config, source: str) -> None:
    """What a run holds in memory at once, against what the machine has: a size that cannot fit is
    refused now, naming its key, not as an allocation traceback (or a swap storm) mid-run."""
    vision, scan, agent = cfg.vision, cfg.scan, cfg.agent
    side = 64 if vision.data == "dsprites" else cfg.env.size
    channels = 1 if vision.data == "dsprites" else 3
    image = channels * side * side  # one frame, in bytes as uint8
    # dSprites renders float32 before its uint8 copy; env frames are collected as uint8.
    needs = [("vision.n_frames", vision.n_frames * image * (5 if vision.data == "dsprites" else 1), f"{vision.n_frames} frames of {side}×{side}×{channels}"),
             ("vision.batch_size", vision.batch_size * image * 4, f"a batch of {vision.batch_size} float32 frames")]
    if scan.enabled:
        renders = {"scan.judge_renders": scan.judge_renders, "scan.eval_img2sym": scan.eval_img2sym,
                   "scan.images_per_concept": scan.images_per_concept * scan.n_concepts, "scan.eval_samples": scan.eval_samples * scan.eval_concepts}
        needs += [(k, n * image * 4, f"{n} float32 renders") for k, n in renders.items()]
    if vision.data == "env":
        from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

        from agents.algos import ALGOS

        off_policy = issubclass(ALGOS[agent.algo], OffPolicyAlgorithm)
        for name, m in cfg.methods.items():
            obs = image if m.observe == "pixels" else vision.latent_dim * 4  # uint8 frames, float32 latents
            own = {**agent.hyperparams, **m.hyperparams}
            where = f"methods.{name}.hyperparams" if m.hyperparams else "agent.hyperparams"
            if off_policy:  # the replay buffer fills up to the steps taken: observations and next observations
                size = min(int(own.get("buffer_size", 1_000_000)), cfg.timesteps_of(name))
                needs.append((f"{where}.buffer_size" if "buffer_size" in own
                               else f"methods.{name}.total_timesteps" if m.total_timesteps else "agent.total_timesteps",
                              2 * size * obs, f"a replay buffer of {size} observations for method {name!r}"))
            else:  # SB3's rollout buffer stores every observation as float32
                n_steps = int(own.get("n_steps", 2048 if agent.algo == "ppo" else 5))
                needs.append((f"{where}.n_steps" if "n_steps" in own else "agent.n_envs",
                              n_steps * agent.n_envs * (obs if m.observe == "latents" else image * 4),
                              f"a rollout buffer of {n_steps} steps × {agent.n_envs} envs for method {name!r}"))
    memory = machine_memory()
    for key, need, what in needs:
        if need > memory:
            raise ConfigError(source, key, f"{what}: {_bytes(need)} in memory, and this machine has {_bytes(memory)}")


_CHECKED: dict[tuple[Any, ...], None] = {}


def check_vision_checkpoint(cfg: Config, source: str) -> None:
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


def check_agent_builds(cfg: Config, source: str) -> None:
    """Build every method's algorithm and policy as stage 2 will (SB3 itself, on the env's spaces):
    what only construction reveals (``net_arch: banana``, an SB3 assertion) is refused now, naming
    the key, and not after stage 1 has trained."""
    from agents.train import check_agent_build

    agent = cfg.agent
    for name, m in cfg.methods.items():
        arch = {k: cfg.vision.params[k] for k in ("channels", "hidden") if k in cfg.vision.params}
        hyper, policy = {**agent.hyperparams, **m.hyperparams}, {**agent.policy_kwargs, **m.policy_kwargs}
        freq = hyper.get("train_freq")
        if isinstance(freq, list) and freq[1:] == ["episode"] and agent.n_envs > 1:  # SB3 asserts it in learn()
            key = f"methods.{name}.hyperparams.train_freq" if "train_freq" in m.hyperparams else "agent.hyperparams.train_freq"
            raise ConfigError(source, key, f"SB3 trains per episode with one env only; set agent.n_envs: 1 (it is {agent.n_envs})")
        problem = check_agent_build(
            cfg.env.name, cfg.env.size, cfg.env.max_steps, agent.algo, m.observe, cfg.vision.latent_dim,
            {"latent_dim": cfg.vision.latent_dim, **arch}, hyper, policy, agent.n_envs,
        )
        if problem is None:
            continue
        part, arg, message = problem
        where = "hyperparams" if part == "hyperparams" else "policy_kwargs"
        own = m.hyperparams if where == "hyperparams" else m.policy_kwargs
        prefix = f"methods.{name}.{where}" if arg in own or (arg is None and own) else f"agent.{where}"
        raise ConfigError(source, f"{prefix}.{arg}" if arg else prefix, f"SB3 cannot build {agent.algo.upper()} with it: {message}")


def _constructor_error(e: Exception, params: dict[str, Any], prefix: str) -> str:
    """The dotted key a constructor's error is about: the setting its message names (longest name
    first, so ``dae_layer`` wins over ``dae``), else the block the settings came from."""
    text = str(e)
    for k in sorted(params, key=len, reverse=True):
        if k in text:
            return f"{prefix}.{k}"
    return prefix


def check_models_build(cfg: Config, source: str) -> None:
    """Build every vision model stage 1 will train (``vision:`` and each registry-name method's
    encoder), on torch's meta device: no memory, no init, milliseconds. A value only the model's
    constructor checks (``likelihood: foo``, a ``dae_layer`` the DAE lacks) is refused now, naming
    the key, and not after frame collection and DAE pretraining."""
    import torch

    from vision.registry import VISION_MODELS, model_kwargs

    v = cfg.vision
    obs_shape = (1, 64, 64) if v.data == "dsprites" else (3, cfg.env.size, cfg.env.size)
    extra: dict[str, Any] = {}
    users = [("vision", v.model, v.params)] + [
        (f"methods.{n}.params", m.encoder, m.params) for n, m in cfg.methods.items() if m.encoder in VISION_MODELS
    ]
    for prefix, name, params in users:
        cls = VISION_MODELS[name]
        kwargs = model_kwargs(cls, params, v.n_frames)  # as stage 1 builds it
        if getattr(cls, "learns_from", "frames") == "transitions" and "n_actions" not in kwargs and "action_dim" not in kwargs:
            if not extra:
                from envs.registry import make_env
                from vision.icf import action_kwargs

                env = make_env(cfg.env.name, cfg.env.domains.vision, size=cfg.env.size)
                try:
                    extra.update(action_kwargs(env.action_space))
                finally:
                    env.close()
            kwargs.update(extra)
        with torch.device("meta"):
            if getattr(cls, "requires", None) == "dae":
                if kwargs.get("dae_checkpoint"):
                    continue  # its DAE is a file, read by stage 1 (and checked there)
                try:
                    kwargs["dae"] = VISION_MODELS["dae"](obs_shape, **v.dae.params)
                except (ValueError, TypeError) as e:
                    raise ConfigError(source, _constructor_error(e, v.dae.params, "vision.dae.params"), str(e)) from None
            try:
                cls(obs_shape, latent_dim=v.latent_dim, **kwargs)
            except (ValueError, TypeError) as e:
                raise ConfigError(source, _constructor_error(e, params, prefix), str(e)) from None


def _check_external(env: EnvConfig, source: str) -> None:
    """What can be said of ``env.external`` before building it: a known preset, a name of its own."""
    from envs.recolour import PRESETS, recoloured_gym_id
    from envs.registry import ENVS

    if env.external.preset not in PRESETS:
        raise ConfigError(source, "env.external.preset", unknown_name(env.external.preset, PRESETS, "recolour preset"))
    known = ENVS.get(env.name)
    if known is not None and known.gym_id != recoloured_gym_id(env.name):
        raise ConfigError(source, "env.name", f"{env.name!r} is a built-in env; name the external env otherwise")


def _cannot_make(env: EnvConfig, e: Exception, source: str) -> ConfigError:
    """An unknown id, a missing extra, a non-image env: one line, not a traceback."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ConfigError(source, "env.external.gym_id", f"cannot make {env.external.gym_id!r}: {msg}")


def register_external_env(env: EnvConfig, source: str = "<config>") -> None:
    """Register ``env.external`` as env ``env.name`` in this process (nothing when it has none).

    The explicit call before a process makes the config's envs (the pipeline, each agent worker);
    validating a config registers nothing. Idempotent: registering again replaces the entry.
    """
    from envs.recolour import register_recoloured

    if not env.external.gym_id:
        return
    _check_external(env, source)
    ext = env.external
    try:
        register_recoloured(env.name, ext.gym_id, ext.preset, base_kwargs=ext.kwargs, replace=True)
    except Exception as e:  # the env's own code may raise anything
        raise _cannot_make(env, e, source) from None


@contextmanager
def external_env_checked(env: EnvConfig, source: str) -> Iterator[None]:
    """``env.external`` registered as env ``env.name`` for the checks inside the block only (they
    build its domains and SB3 on its spaces); afterwards the registries are as they were."""
    from envs.recolour import registered_recoloured

    if not env.external.gym_id:
        yield
        return
    _check_external(env, source)
    ext = env.external
    with ExitStack() as stack:
        try:
            stack.enter_context(registered_recoloured(env.name, ext.gym_id, ext.preset, base_kwargs=ext.kwargs))
        except Exception as e:  # the env's own code may raise anything
            raise _cannot_make(env, e, source) from None
        yield


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


def check_scan(cfg: Config, source: str) -> None:
    """What the schema cannot say: SCAN's words must be scene factors of the env, and it needs them."""
    from envs.registry import get_env_info

    scan = cfg.scan
    if cfg.vision.data != "env" and (scan.enabled or scan.compare):
        raise ConfigError(source, "scan.enabled" if scan.enabled else "scan.compare", f"SCAN names the env's scene factors; vision.data: {cfg.vision.data} has none")
    names = {f.name: f for f in get_env_info(cfg.env.name).scene_space.factors}
    for i, name in enumerate(scan.factors):
        if name not in names:
            raise ConfigError(source, f"scan.factors[{i}]", unknown_name(name, names, f"{cfg.env.name} scene factor"))
    for key, values in (("factors", scan.factors), ("compare", scan.compare)):
        if len(set(values)) != len(values):
            raise ConfigError(source, f"scan.{key}", f"entries must be distinct, got {values}")
    for key, widths in (("hidden", scan.hidden), ("recombine_hidden", scan.recombine_hidden)):
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


def safe_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name) and name not in (".", "..")
