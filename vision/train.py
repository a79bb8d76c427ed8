"""Stage 1's training loop: one plain function that reads top to bottom (cleanrl style).

``train_vision`` trains any :class:`~vision.base.VisionModel` on a uint8 frame array held on the
training device, logs every loss term (and the per-latent KL) to TensorBoard under ``vision/``,
shows a tqdm bar with the live loss, writes a resumable ``checkpoint_last.pt`` every
``checkpoint_every`` steps and ``model.pt`` at the end.

Determinism and resume: the batch of step ``t`` is a slice of a permutation seeded by
``(seed, epoch)`` and the model's noise comes from ``torch.manual_seed`` of ``(seed, t)``, so
both are functions of the step alone. A run resumed from a checkpoint at step ``k`` therefore
takes exactly the steps an uninterrupted run takes after ``k`` (on the same machine).

channels_last on the CPU (oneDNN's convolutions are faster in it) but not on CUDA (these small nets
ran 1.5× slower in it on an H100: docs/experiments/gpu-throughput.md), and Adam's fused kernel on
the CPU (:func:`fuse_adam`); on CUDA optional bf16 autocast (``amp``, off by default: it did not pay
either), optional ``torch.compile`` of the nets, an optional CUDA-graphed step (``cuda_graph``:
:mod:`vision.graphed`), batch indices kept on the GPU, and the finiteness check only at log and
checkpoint steps (a host sync every step would stall the GPU).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vision.base import VisionModel
from vision.checkpoint import (
    CheckpointError,
    model_record,
    read_checkpoint,
    save_atomic,
    save_checkpoint,
)
from vision.graphed import GraphedTrainStep, eager_state_dict, graph_unsupported
from vision.interrupt import GracefulInterrupt

CHECKPOINT = "checkpoint_last.pt"
MODEL = "model.pt"


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN/inf loss; the last good checkpoint is kept and named in the message."""


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 5_000
    """Optimiser steps (one batch each)."""
    batch_size: int = 64
    """Images per step."""
    lr: float | None = None
    """Adam learning rate; None takes the model's ``default_lr``."""
    checkpoint_every: int = 1_000
    """Steps between resumable checkpoints (``checkpoint_last.pt``)."""
    log_every: int = 50
    """Steps between history/TensorBoard points (the mean of the terms over those steps)."""
    device: str = "auto"
    """auto | cpu | cuda (auto: CUDA when available)."""
    amp: bool = False
    """bf16 autocast on CUDA (ignored on CPU); measured slower than fp32 for these nets on an H100."""
    compile: bool = False
    """``torch.compile`` the nets on CUDA (ignored on CPU)."""
    cuda_graph: bool = False
    """Capture the training step as one CUDA graph and replay it (:mod:`vision.graphed`); CUDA
    only (ignored on CPU). Models it cannot capture train eagerly, with a warning saying why."""
    fused_adam: bool = True
    """Adam's fused kernel on the CPU (:func:`fuse_adam`). False keeps torch's default kernel: the
    same update rule, summed in another order. Stage 1 amplifies that rounding, so the two reach
    different models from one seed. False takes the steps the code took before the fused kernel
    (bit for bit in tests/vision/test_speed.py), though other changes may move a long run."""
    seed: int = 0
    """Seeds batch order and the model's sampling noise."""
    progress: bool = True
    """Show progress: a tqdm bar on a terminal, a line every 30 s elsewhere (vision.progress)."""


class TrainResult(NamedTuple):
    model_path: Path
    steps: int
    history: dict[str, list[float]]
    images_per_s: float
    """Throughput of this call's steps (0 when nothing was left to train)."""
    resumed_from: int


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` → CUDA if available else CPU; ``cuda`` without a GPU is a clear error."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but torch sees no CUDA GPU (use device: auto or cpu)")
    return torch.device(name)


def batch_indices(n: int, batch_size: int, seed: int) -> Callable[[int], np.ndarray]:
    """step → indices of its batch: epoch-wise permutations seeded by (seed, epoch), last partial batch dropped."""
    per_epoch = max(1, n // batch_size)
    cache: dict[int, np.ndarray] = {}

    def indices(step: int) -> np.ndarray:
        epoch, i = divmod(step, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        return cache[epoch][i * batch_size : (i + 1) * batch_size]

    return indices


def device_batch_indices(n: int, batch_size: int, seed: int, device: torch.device) -> Callable[[int], torch.Tensor]:
    """:func:`batch_indices` as int64 tensors on ``device``, each epoch's permutation copied over once.

    A host-to-device copy of pageable memory waits for the GPU to drain its queue, so copying
    every step's indices would serialise the host's kernel launches with the GPU's work.
    """
    per_epoch = max(1, n // batch_size)
    cache: dict[int, torch.Tensor] = {}

    def indices(step: int) -> torch.Tensor:
        epoch, i = divmod(step, per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n)).to(device)
        return cache[epoch][i * batch_size : (i + 1) * batch_size]

    return indices


def fuse_adam(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """Switch every plain ``torch.optim.Adam`` whose parameters all live on the CPU to torch's fused kernel.

    The default CPU Adam runs about ten elementwise ops per parameter tensor; the fused one makes
    one pass. In the profile of a 64 px β-VAE step on this project's 2-core CPU, Adam's ops fell
    from about a quarter of the self time to 4% (``benchmarks/vision_profile.py [--plain-adam]``).
    Same update rule; results agree to float rounding (tests/vision/test_speed.py). Groups that
    asked for foreach, capturable or differentiable Adam are left as they are.
    """
    for opt in optimizers:
        if type(opt) is not torch.optim.Adam:
            continue
        for group in opt.param_groups:
            if group.get("foreach") or group.get("capturable") or group.get("differentiable") or group.get("fused"):
                continue
            if all(p.device.type == "cpu" and p.dtype.is_floating_point for p in group["params"]):
                group["fused"] = True


def prepare_training(
    model: VisionModel, device: torch.device, lr: float, checkpoint: Path | None = None, *, fused_adam: bool = True,
) -> tuple[list[torch.optim.Optimizer], torch.memory_format, tuple[int, dict[str, list[float]], dict[str, torch.Tensor], int]]:
    """Model on ``device`` in its training memory format, in train mode, with its optimisers.

    Restores the training state from ``checkpoint`` when given. Returns the optimisers, the memory
    format batches must be in, and (step, history, partial sums, their count) — zeros without a
    checkpoint. Benchmarks call this too, so they time the step stage 1 runs.
    """
    fmt = memory_format(device)
    model.to(device, memory_format=fmt)
    model.train()
    optimizers = model.configure_optimizers(lr)
    state: tuple[int, dict[str, list[float]], dict[str, torch.Tensor], int] = (0, {}, {}, 0)
    if checkpoint is not None:
        state = _load_training_state(checkpoint, model, optimizers, device)
    if fused_adam:
        fuse_adam(optimizers)  # after loading: a checkpoint's param groups replace the optimiser's options
    return optimizers, fmt, state


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on the CPU, where oneDNN's convolutions ran ≈9% faster in it (64×64 β-VAE);
    contiguous on CUDA, where the same nets ran 1.5× slower in channels_last (H100, fp32, batch 64:
    9,588 vs 6,409 images/s; ``benchmarks/vision_throughput.py``)."""
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0] >> 1)


def frames_to_tensor(frames: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) → uint8 (N, C, H, W) on ``device`` (4× smaller than float; cast per batch)."""
    if frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError(f"frames must be uint8 (N, H, W, C), got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous().to(device)


def _load_training_state(
    path: Path, model: VisionModel, optimizers: list[torch.optim.Optimizer], device: torch.device
) -> tuple[int, dict[str, list[float]], dict[str, torch.Tensor], int]:
    """(step, history, partial sums since the last log point, their count) from a checkpoint."""
    record = read_checkpoint(path)
    mine = model_record(model)
    for key in ("model", "obs_shape", "kwargs"):
        if record[key] != mine[key]:
            raise CheckpointError(
                f"{path} was written for another model ({key}: {record[key]!r} ≠ {mine[key]!r}); "
                "delete it or start over with --force"
            )
    state = record.get("train")
    if not state or len(state["optimizers"]) != len(optimizers):
        raise CheckpointError(f"{path} holds no resumable training state")
    model.load_state_dict(record["state_dict"])
    for opt, sd in zip(optimizers, state["optimizers"]):
        opt.load_state_dict(sd)
    sums = {k: v.to(device) for k, v in state["sums"].items()}
    return int(state["step"]), {k: list(v) for k, v in state["history"].items()}, sums, int(state["n_summed"])


@contextmanager
def cudnn_deterministic(enabled: bool = True) -> Iterator[None]:
    """cuDNN's deterministic convolution algorithms while inside (the flags are restored after).

    cuDNN's default backward algorithms accumulate with atomics in no fixed order, so two GPU runs
    of one config and seed drift apart, far enough to change what the model learns (measured in
    docs/experiments/seek-avoid-stage1-gpu.md). darla promises the same results for the same seed
    on the same machine, so stage 1 trains with the deterministic algorithms on CUDA.
    """
    if not enabled:
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


#: Frames (the first of the dataset, fixed over training) in each checkpoint's TensorBoard images.
TB_IMAGES = 8


@torch.no_grad()
def _log_images(writer: Any, model: VisionModel, x: torch.Tensor, step: int) -> None:
    """TensorBoard images at a checkpoint: ``vision/reconstructions`` (top: input, bottom: its
    reconstruction) and ``vision/traversals`` (one row per latent, most KL first, ±2.5 prior s.d.
    around the first frame's code; first column: that frame), the pictures stage 1 ends with."""
    from vision.traverse import reconstruction_grid, traversal_grid

    frames = x.float().div(255.0).contiguous().cpu().numpy()
    model.eval()
    try:
        writer.add_image("vision/reconstructions", reconstruction_grid(model, frames), step, dataformats="HWC")
        order = np.argsort(-model.kl_per_dim(frames))
        writer.add_image("vision/traversals", traversal_grid(model, frames[0], order=order), step, dataformats="HWC")
    finally:
        model.train()


def train_vision(
    model: VisionModel,
    frames: np.ndarray,
    settings: TrainSettings,
    out_dir: str | Path,
    *,
    resume: bool = True,
    tb_dir: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` on uint8 (N, H, W, C) ``frames``; write ``out_dir/model.pt``.

    Resumes from ``out_dir/checkpoint_last.pt`` when present and ``resume`` is true. Raises
    :class:`NonFiniteLossError` (keeping the last good checkpoint) if the loss stops being finite.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, model_path = out_dir / CHECKPOINT, out_dir / MODEL
    device = resolve_device(settings.device)
    cuda = device.type == "cuda"
    data = frames_to_tensor(frames, device)
    if tuple(data.shape[1:]) != model.obs_shape:
        raise ValueError(f"frames are {tuple(data.shape[1:])} (C, H, W) but the model takes {model.obs_shape}")
    if len(data) < settings.batch_size:
        raise ValueError(f"{len(data)} frames are fewer than one batch of {settings.batch_size}")
    # The mean of the terms since the last log point (kept in checkpoints, so a resumed run logs
    # exactly what an uninterrupted one does).
    optimizers, fmt, (start, history, sums, n_summed) = prepare_training(
        model, device, settings.lr or model.default_lr, ckpt_path if resume and ckpt_path.exists() else None,
        fused_adam=settings.fused_adam,
    )
    if cuda and settings.compile:
        # Each net compiled in place (state_dict keys unchanged). Not the loss: it reads Python
        # numbers that change with the step (CapacityVAE's C), which would recompile every step.
        for child in model.children():
            child.compile()

    graphed: GraphedTrainStep | None = None
    want_graph = cuda and settings.cuda_graph
    if want_graph and (why := graph_unsupported(model, optimizers, device, settings.amp)):
        warnings.warn(f"vision.cuda_graph: {why}; training eagerly", stacklevel=2)
        want_graph = False

    def save_training_state(step: int) -> None:
        record = model_record(model)
        record["train"] = {
            "step": step,
            "history": history,
            # A graphed run's Adam is capturable; the checkpoint holds what the eager one would.
            "optimizers": [eager_state_dict(o) if graphed is not None else o.state_dict() for o in optimizers],
            "sums": {k: v.cpu() for k, v in sums.items()},
            "n_summed": n_summed,
            "settings": asdict(settings),
        }
        save_atomic(record, ckpt_path)

    writer = None
    if tb_dir is not None and start < settings.steps:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(tb_dir), purge_step=start)  # drop events past the checkpoint
    bar = None
    if settings.progress:
        from vision.progress import progress_bar

        bar = progress_bar(settings.steps, start, f"vision {model.name}", "step")

    batches = device_batch_indices(len(data), settings.batch_size, settings.seed, device)
    last_good = start
    t0 = time.perf_counter()
    with (
        GracefulInterrupt(f"vision training of {model.name!r}") as interrupt,  # Ctrl-C checkpoints, then stops
        cudnn_deterministic(cuda),
    ):
        try:
            if want_graph and start < settings.steps:  # inside cudnn_deterministic: the graph keeps the algorithms it captured
                graphed = GraphedTrainStep.capture(model, optimizers[0], data, settings.batch_size, fmt)
            for step in range(start, settings.steps):
                idx = batches(step)
                torch.manual_seed(_step_seed(settings.seed, step))
                is_log = (step + 1) % settings.log_every == 0 or step + 1 == settings.steps
                is_ckpt = (step + 1) % settings.checkpoint_every == 0 or step + 1 == settings.steps
                try:
                    if graphed is not None:
                        terms = graphed(idx)
                    else:
                        x = data.index_select(0, idx).float().div_(255.0).contiguous(memory_format=fmt)
                        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and settings.amp):
                            terms = model.train_step(x, step, optimizers, check_finite=not cuda or is_log or is_ckpt)
                    if cuda and (is_log or is_ckpt) and not torch.isfinite(terms["loss"]):
                        raise FloatingPointError(f"non-finite loss at step {step}")
                except FloatingPointError as e:
                    kept = f"the last good checkpoint ({ckpt_path}, step {last_good}) is kept" if ckpt_path.exists() else "no checkpoint was written yet"
                    raise NonFiniteLossError(
                        f"vision training of {model.name!r} stopped: {e}; {kept}. Try a lower vision.lr or a smaller beta"
                    ) from None
                for k, v in terms.items():
                    sums[k] = sums[k] + v.float() if k in sums else v.float()
                n_summed += 1
                if is_log:
                    means = {k: (v / n_summed).cpu() for k, v in sums.items()}
                    history.setdefault("step", []).append(step + 1)
                    for k, v in means.items():
                        if v.ndim == 0:
                            history.setdefault(k, []).append(float(v))
                            if writer is not None:
                                writer.add_scalar(f"vision/{k}", float(v), step + 1)
                        elif writer is not None and v.ndim == 1:  # per-latent terms: KL, ICF's selectivity
                            for i, kv in enumerate(v.tolist()):
                                writer.add_scalar(f"vision/{k}/z{i:02d}", kv, step + 1)
                    if bar is not None:
                        bar.set_postfix(loss=f"{float(means['loss']):.1f}")
                    sums, n_summed = {}, 0
                if is_ckpt:
                    save_training_state(step + 1)
                    last_good = step + 1
                    if writer is not None:
                        _log_images(writer, model, data[:TB_IMAGES], step + 1)
                if bar is not None:
                    bar.update(1)
                if interrupt.requested and step + 1 < settings.steps:  # Ctrl-C: checkpoint this step, then stop
                    if not is_ckpt:
                        save_training_state(step + 1)
                    interrupt.stop()
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
    wall = time.perf_counter() - t0
    done = settings.steps - start
    for child in model.children():  # back to eager for evaluation at other batch shapes
        child._compiled_call_impl = None
    model.eval()
    save_checkpoint(model_path, model, extra={"steps": settings.steps, **dict(extra or {})})
    if interrupt.requested:  # the signal came during the last step: the model is saved, stop anyway
        interrupt.stop()
    ips = done * settings.batch_size / wall if done > 0 and wall > 0 else 0.0
    return TrainResult(model_path, settings.steps, history, ips, start)
