"""The report's ICF section: what each Independently Controllable Factors policy moves.

For every stage-1 encoder that is an ICF (``vision.model: icf`` or a method ``{encoder: icf}``)
it shows, from the ``selectivity`` block stage 1 wrote into that encoder's ``summary.json``
(the vision stage, :mod:`darla.stages.vision`; nothing is recomputed here):

- the selectivity matrix: policy k (row) × latent j (column), the mean |Δf_j| one step of π_k
  causes, with each latent's selectivity E[sel_k] under its own policy beside it;
- for discrete actions, the mean Δf_j per action (signed and absolute): which latent moves with
  which action;
- ``icf_traversals.png``: each latent swept over the range its codes take, most selective first.

The per-factor probe of the same encoder is in the report's "What each encoder carries" table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from darla.config import Config
from darla.report.html import b64, esc, fig_png, img
from darla.runs import RunDir


def icf_blocks(cfg: Config, run: RunDir, results: dict[str, Any]) -> list[tuple[str, Path, dict[str, Any]]]:
    """(label, encoder folder, selectivity block) of every ICF encoder of the run, stage-1 model first."""
    out = []
    if results.get("vision", {}).get("selectivity"):
        out.append((f"{cfg.vision.model} (vision)", run.vision_dir(), results["vision"]["selectivity"]))
    for method, numbers in results.get("encoders", {}).items():
        if numbers.get("selectivity"):
            out.append((method, run.vision_dir(method), numbers["selectivity"]))
    return out


def selectivity_figure(sel: dict[str, Any], title: str) -> bytes:
    """Heat map of the matrix (policy k × latent j) with each row's selectivity written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(sel["matrix"], dtype=float)
    k = len(m)
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * k, 0.9 + 0.4 * k))
    im = ax.imshow(m, cmap="viridis")
    ax.set_xticks(range(k), [f"z{j}" for j in range(k)], fontsize=7)
    ax.set_yticks(range(k), [f"π{i}  sel {s:.2f}" for i, s in enumerate(sel["selectivity"])], fontsize=7)
    ax.set_xlabel("latent j", fontsize=8)
    ax.set_ylabel("policy k", fontsize=8)
    ax.set_title(title, fontsize=8)
    bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("mean |Δf_j| under π_k", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    return fig_png(fig)


def _per_action_table(sel: dict[str, Any]) -> str:
    signed, absolute = sel.get("per_action_signed"), sel.get("per_action_abs")
    if not signed or not absolute:
        return ""
    names = sel.get("action_names") or [f"a{i}" for i in range(len(signed))]
    k = len(signed[0])
    head = "<tr><th>action</th>" + "".join(f"<th>z{j}</th>" for j in range(k)) + "</tr>"
    rows = "".join(
        f"<tr><td>{esc(n)}</td>" + "".join(f"<td>{s:+.2f} ({a:.2f})</td>" for s, a in zip(srow, arow)) + "</tr>"
        for n, srow, arow in zip(names, signed, absolute)
    )
    return (
        "<table>" + head + rows + "</table><p class='note'>Mean Δf_j over fresh vision-domain states for each "
        "action (mean |Δf_j| in brackets): a latent that tracks a controllable factor moves with the actions "
        "that change it and stays put under the others.</p>"
    )


def icf_section(cfg: Config, run: RunDir, results: dict[str, Any]) -> str:
    """The HTML section ("" when the run trained no ICF)."""
    blocks = icf_blocks(cfg, run, results)
    if not blocks:
        return ""
    parts = ["<h2>Independently Controllable Factors</h2>"]
    for label, folder, sel in blocks:
        parts += [
            f"<h3>{esc(label)}: selectivity matrix ({sel['actions']} actions, {sel['n_states']} vision-domain states)</h3>",
            img(b64(selectivity_figure(sel, f"{label}: mean |Δf_j| under policy π_k")), f"{label} selectivity matrix"),
            _per_action_table(sel),
        ]
        trav = folder / "icf_traversals.png"
        if trav.exists():
            parts += [
                f"<h3>{esc(label)}: latent traversals (most selective first; each latent over the 2nd–98th "
                "percentile of its codes; first column: the frame itself)</h3>",
                img(b64(trav.read_bytes()), f"{label} ICF traversals"),
            ]
    parts.append(
        "<p class='note'>sel_k = |Δf_k| ÷ (Σ_j |Δf_j| + ε) for one env step; a latent's selectivity is its "
        "mean under its own policy π_k (exact expectation over discrete actions, sampled for continuous ones). "
        "A latent no action can move (a colour) cannot be selective and is driven by reconstruction alone.</p>"
    )
    return "\n".join(parts)
