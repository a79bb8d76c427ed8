"""Stage 1's training step captured once as a CUDA graph and replayed every step.

At batch 64 these nets are small enough that a GPU step is bound by kernel launches (an H100
ran the 64 px β-VAE at 0.02–0.11 of its ``torch.mm`` rate: docs/experiments/gpu-throughput.md).
Replaying one captured graph launches the whole step (batch gather, forward, backward and an
``Adam(capturable=True)`` update) at once. Everything the graph touches lives in static buffers:
the frame array, the batch's indices, the parameters, gradients and Adam state.

What stays as in the eager step:

- **Randomness.** The training loop reseeds torch (``torch.manual_seed``) before every replay;
  a replay reads the generator's current seed and starts at offset 0, as the eager step does,
  so the reparameterisation noise of step ``t`` is the same in both.
- **The loss terms.** Each replay writes them to static outputs; a call returns copies, which the
  loop averages and logs as before. The loop checks them for NaN/inf at log and checkpoint steps,
  as it does for any CUDA step (a graph cannot raise before its own update).
- **Checkpoints.** :func:`eager_state_dict` writes the optimiser's state as the eager Adam would
  (``capturable`` off, step counts on the CPU), so a checkpoint resumes on either path and on a
  machine without a GPU.

Only models whose ``loss(x, step)`` is a pure function of the batch, the parameters and torch's
RNG are captured (:data:`GRAPHABLE`): a loss that reads a Python number changing with the step
(CapacityVAE's capacity C) would replay the number it was captured with. A model outside it, a
model with its own ``train_step``, or a failed capture trains eagerly, with a warning that says
why (:func:`graph_unsupported`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from vision.base import VisionModel

#: Models captured: a single Adam, the base ``train_step``, and a loss that does not depend on
#: the step (not capacity_vae, whose C grows with it) nor copies host data to the GPU
#: (not dae, whose mask corruption builds tensors from Python numbers every call).
GRAPHABLE = frozenset({"vae", "beta_vae", "beta_vae_dae"})
#: Eager steps run (then undone) before the capture, as CUDA graphs need: they warm up the
#: allocator, cuBLAS/cuDNN workspaces and Adam's state on a side stream.
WARMUP_STEPS = 3


def graph_unsupported(model: VisionModel, optimizers: Sequence[torch.optim.Optimizer], device: torch.device, amp: bool) -> str | None:
    """Why ``model``'s training step cannot be captured here, or None when it can."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, the model trains on {device}"
    if model.name not in GRAPHABLE:
        return f"{model.name!r} is not one of the models captured ({', '.join(sorted(GRAPHABLE))})"
    if type(model).train_step is not VisionModel.train_step:
        return f"{model.name!r} has its own train_step"
    if len(optimizers) != 1 or type(optimizers[0]) is not torch.optim.Adam:
        return "the step is captured with a single torch.optim.Adam"
    if amp:
        return "bf16 autocast is not captured"
    return None


def _set_capturable(opt: torch.optim.Optimizer, on: bool) -> None:
    """Adam's ``capturable`` option, with its step counts moved where that option keeps them."""
    for group in opt.param_groups:
        group["capturable"] = on
        for p in group["params"]:
            state = opt.state.get(p)
            if state and "step" in state:
                step = state["step"]
                state["step"] = step.to(p.device, torch.float32) if on else step.to("cpu", torch.float32)


def eager_state_dict(opt: torch.optim.Optimizer) -> dict:
    """``opt.state_dict()`` as the eager Adam writes it: ``capturable`` off, step counts on the CPU."""
    sd = opt.state_dict()
    state = {}
    for k, v in sd["state"].items():
        v = dict(v)  # state_dict() shares the live per-parameter dicts
        if "step" in v:
            v["step"] = v["step"].detach().to("cpu", torch.float32).clone()
        state[k] = v
    groups = [dict(g, capturable=False) for g in sd["param_groups"]]
    return {"state": state, "param_groups": groups}


class TrainingSnapshot:
    """The values of a model's parameters and buffers and of its optimiser's state, to put back later.

    :meth:`restore` copies them back in place (a captured graph holds the tensors' addresses).
    Optimiser state created after the snapshot is zeroed, which is where a fresh Adam starts
    (zero moments, step 0).
    """

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        self.model, self.opt = model, opt
        self.params = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.state = {p: {k: v.detach().clone() for k, v in s.items() if isinstance(v, Tensor)} for p, s in opt.state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for k, v in self.model.state_dict().items():
            v.copy_(self.params[k])
        for p, s in self.opt.state.items():
            for k, v in s.items():
                if isinstance(v, Tensor):
                    v.copy_(self.state[p][k]) if p in self.state else v.zero_()


class GraphedTrainStep:
    """``model.train_step`` on ``data[idx]`` for one batch size, as a replayed CUDA graph.

    Build with :meth:`capture`; call with the step's int64 indices on the GPU (copied into the
    graph's index buffer, no host sync) after seeding torch for the step. The parameters and the
    optimiser's state are exactly as they were before the capture: the warm-up steps it needs
    are undone.
    """

    def __init__(self, graph: torch.cuda.CUDAGraph, idx: Tensor, terms: dict[str, Tensor]) -> None:
        self.graph, self.idx, self.terms = graph, idx, terms

    @classmethod
    def capture(
        cls,
        model: VisionModel,
        opt: torch.optim.Optimizer,
        data: Tensor,
        batch_size: int,
        fmt: torch.memory_format = torch.contiguous_format,
    ) -> GraphedTrainStep | None:
        """The captured step, or None (with a warning, the model and optimiser untouched) if capture fails."""
        device = data.device
        _set_capturable(opt, True)
        before = TrainingSnapshot(model, opt)
        idx = torch.arange(batch_size, device=device)

        def step() -> dict[str, Tensor]:
            x = data.index_select(0, idx).float().div_(255.0).contiguous(memory_format=fmt)
            out = model.loss(x, 0)  # GRAPHABLE losses do not read the step
            out.total.backward()
            opt.step()
            return {"loss": out.total.detach(), **{k: v.detach() for k, v in out.terms.items()}}

        try:
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), warnings.catch_warnings():
                # Adam warns when a capturable instance steps outside a capture: here it must.
                warnings.filterwarnings("ignore", message=".*capturable=True.*")
                for _ in range(WARMUP_STEPS):
                    opt.zero_grad(set_to_none=True)
                    step()
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            opt.zero_grad(set_to_none=True)  # backward allocates the gradients inside the graph's pool
            with torch.cuda.graph(graph):
                terms = step()
        except Exception as e:  # noqa: BLE001 - any capture failure falls back to the eager step
            warnings.warn(f"stage 1: CUDA graph capture of {model.name!r} failed ({e}); training eagerly", stacklevel=2)
            graph = None
        finally:
            torch.cuda.synchronize(device)
            before.restore()  # undo the warm-up steps
        if graph is None:
            opt.zero_grad(set_to_none=True)
            _set_capturable(opt, False)
            return None
        return cls(graph, idx, terms)

    def __call__(self, idx: Tensor) -> dict[str, Tensor]:
        """One training step on the frames at ``idx``; the detached loss terms (copies)."""
        self.idx.copy_(idx)
        self.graph.replay()
        return {k: v.clone() for k, v in self.terms.items()}
