"""The config schema: frozen dataclasses, one per section, each field documented in ``metadata["doc"]``.

Bounds a value must respect sit in the metadata too (``min``, ``max``, ``exclusive_min``), where
:mod:`darla.config.strict` reads them. Nothing here reads a file or a registry.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


def _bounds(min: float | None = None, max: float | None = None, **kw: Any) -> dict[str, Any]:
    """Field metadata: the range a number must lie in (None: unbounded on that side)."""
    return {"min": min, "max": max, **kw}


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
    fused_adam: bool = field(
        default=True,
        metadata={"doc": "Adam's fused kernel on the CPU (faster). Same update rule, summed in another order, so "
                         "stage 1 reaches a different model: false takes the plain kernel's steps, as the code did "
                         "before commit 85100e8 (2026-12-04)"},
    )
    init_seed: int | None = field(
        default=None,
        metadata={"doc": "seed of stage 1's initialisations, batch order and noise (every encoder, darla's DAE); "
                         "null → the run's seed. The frames stay the run's seed's, so varying this alone measures "
                         "how much of an encoder's variance is its initialisation", **_bounds(0, 2**63 - 1)},
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
                         "report prints every method's budget", **_bounds(1)},
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

