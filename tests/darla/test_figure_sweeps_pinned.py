"""The DARLA figures' sweeps still train the vision models their docs measured.

Each figure sweep (configs/sweeps/{seek_avoid,reacher}_beta.yaml) is a thin layer over a preset,
so an edit to the preset can change what the sweep trains without touching the sweep file: a
preset that moved its β-VAE-DAE to another DAE layer once made the seek-avoid sweep's β-VAEs
inherit the key. This pins every key stage 1 reads (:func:`darla.sweep.groups.stage_1_inputs`),
per vision model, in ``data/figure_sweeps_stage1.json``.

The pinned inputs are those of the measured runs: seek_avoid_beta at a483069
(docs/experiments/seek-avoid-v1-sweep.md) and reacher_beta at 47e1ab0 (its twelve β runs;
docs/experiments/reacher-beta-sweep.md), except ``vision.fused_adam: true``. That key did not
exist at either commit, whose code always took Adam's fused kernel (since 85100e8), so it names
what those runs did.

If this fails on purpose (a new stage-1 key, a new figure), say in the figure's doc that the
sweep's models changed or re-measure it, then re-pin with
``python tests/darla/test_figure_sweeps_pinned.py --write``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from darla.sweep.groups import stage_1_inputs
from darla.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[2]
PINNED = Path(__file__).resolve().parent / "data" / "figure_sweeps_stage1.json"
SWEEPS = ("seek_avoid_beta", "reacher_beta")


def current_inputs(name: str) -> dict[str, dict]:
    """Vision model label (model, its params, seed) → the stage-1 inputs the sweep gives it."""
    out: dict[str, dict] = {}
    for run in load_sweep(ROOT / "configs" / "sweeps" / f"{name}.yaml").runs:
        v = run.config.vision
        label = f"{v.model} {json.dumps(v.params, sort_keys=True)} seed {run.config.seed}"
        assert label not in out, f"{name}: two runs train {label}"
        # through JSON, as pinned: tuples read back as lists
        out[label] = json.loads(json.dumps(stage_1_inputs(run.config), sort_keys=True, default=str))
    return out


def test_figure_sweeps_train_the_measured_models():
    pinned = json.loads(PINNED.read_text())
    assert set(pinned) == set(SWEEPS)
    for name in SWEEPS:
        now = current_inputs(name)
        assert sorted(now) == sorted(pinned[name]), f"{name}: the sweep's set of vision models changed"
        for label, inputs in pinned[name].items():
            assert now[label] == inputs, f"{name}: {label} would train another model than the figure's"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: python {sys.argv[0]} --write   (re-pin; see the module docstring first)")
    PINNED.parent.mkdir(exist_ok=True)
    PINNED.write_text(json.dumps({n: current_inputs(n) for n in SWEEPS}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}")
