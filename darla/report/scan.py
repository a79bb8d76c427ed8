"""The SCAN section of the report: numbers for ``results.json`` and a self-contained HTML fragment.

Both read only ``scan/results.json`` and the PNGs it names (written by :mod:`darla.stages.scan`);
nothing is recomputed. Every string from a config or a file is escaped, every picture is
embedded as base64, so the fragment can sit anywhere in ``report.html``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from darla.config import Config
from darla.report.html import esc, img, png_b64
from darla.runs import RunDir

ABLATION_NOTES = {
    "reverse_kl": "SCAN_R replaces the forward KL(q(z_x|x) ‖ q(z_y|y)) with the reverse one (mode-seeking: expect lower diversity).",
    "entangled": "'SCAN on β = 1 vision' grounds the same words in an entangled vision model trained like stage 1 but with β = 1.",
}
"""Notes under the table for the ablations that ran (the paper's SCAN_R and entangled-vision baselines)."""
GROUPS = (("train", "train"), ("held_out", "held-out"), ("recombined", "recombined"))
"""(metric group, column title) of the accuracy/diversity table, in the paper's order."""


def _load(run: RunDir) -> dict[str, Any] | None:
    if not run.is_complete("scan"):
        return None
    return json.loads(run.path("scan", "results.json").read_text(encoding="utf-8"))


def scan_results(run: RunDir) -> dict[str, Any] | None:
    """The SCAN numbers for ``results.json`` (no paths, no captions); None when no scan stage ran."""
    res = _load(run)
    if res is None:
        return None
    return {
        "vocabulary": res["vocabulary"]["words"],
        "settings": res["settings"],
        "variants": {
            name: {"label": v["label"], "kl_direction": v["kl_direction"], "n_concepts": v["n_concepts"], **v["metrics"]}
            for name, v in res["variants"].items()
        },
        "variant_order": _order(res),
        "img2sym_examples_correct": [row["correct"] for row in res["img2sym"]],
    }


def _order(res: dict[str, Any]) -> list[str]:
    """Variants in the stage's order (SCAN first), which sorted JSON keys do not keep."""
    return list(res.get("variant_order") or res["variants"])


def _num(x: Any) -> str:
    return "—" if not isinstance(x, (int, float)) or math.isnan(x) else f"{x:.2f}"


def _words(aliases: list[str]) -> str:
    return ", ".join(esc(a) for a in aliases) or "<i>nothing</i>"


def _comparison_table(res: dict[str, Any]) -> str:
    head = "<tr><th rowspan='2'>model</th>" + "".join(f"<th colspan='2'>{esc(t)}</th>" for _, t in GROUPS)
    head += "<th rowspan='2'>img2sym accuracy ↑</th></tr><tr>" + "<th>accuracy ↑</th><th>diversity ↓</th>" * len(GROUPS) + "</tr>"
    rows = []
    for name in _order(res):
        v = res["variants"][name]
        m = v["metrics"]
        cells = "".join(f"<td>{_num(m.get(f'scan/{g}/accuracy'))}</td><td>{_num(m.get(f'scan/{g}/diversity'))}</td>" for g, _ in GROUPS)
        rows.append(f"<tr><td>{esc(v['label'])}</td>{cells}<td>{_num(m.get('scan/img2sym/accuracy'))}</td></tr>")
    return "<table>" + head + "".join(rows) + "</table>"


def scan_section(cfg: Config, run: RunDir) -> str:
    """The SCAN section as an HTML fragment (``<h2>`` onwards); "" when no scan stage ran."""

    res = _load(run)
    if res is None:
        return ""
    root = run.path("scan")
    settings = res["settings"]
    first = res["variants"][_order(res)[0]]
    parts = [
        "<h2>SCAN: symbols grounded in the vision latents</h2>",
        f"<p>SCAN (Higgins et al., 2018) learns {len(res['vocabulary']['words'])} words over "
        f"{esc(', '.join(res['vocabulary']['factors']))} of <b>{esc(cfg.env.name)}</b> from "
        f"{esc(settings['images_per_concept'])} renders per concept ({esc(first['n_concepts']['train'])} training concepts, "
        f"{esc(first['n_concepts']['held_out'])} held out), with β = {esc(settings['beta'])} and λ = {esc(settings['lam'])}, "
        f"on the frozen vision model.</p>",
        "<h3>Imagination scores</h3>", _comparison_table(res),
        "<p class='note'>Accuracy: fraction of sym2img samples in which a factor classifier, trained on ground-truth renders only, "
        "finds every attribute the description names. Diversity: KL (nats) between the classifier's values of the "
        "attributes the description leaves out and their uniform distribution (lower is better; 0 = as varied as the data). "
        "Held-out concepts were never trained on; recombined ones come from AND / IN COMMON / IGNORE on training concepts. "
        "img2sym accuracy: fraction of (image, factor) pairs read correctly from fresh renders."
        + "".join(f" {esc(ABLATION_NOTES[n])}" for n in _order(res) if n in ABLATION_NOTES)
        + "</p>",
    ]
    if res["sym2img"]:
        parts.append("<h3>sym2img (top row: ground-truth renders of the concept; bottom row: SCAN's samples)</h3>")
        for item in res["sym2img"]:
            group = "held-out" if item["group"] == "held_out" else item["group"]
            parts.append(
                f"<h4>{_words(item['aliases'])} <span class='note'>({esc(group)}; accuracy {_num(item['accuracy'])}, "
                f"diversity {_num(item['diversity'])})</span></h4>"
                + img(png_b64(root / item["image"]), f"sym2img: {', '.join(item['aliases'])}")
            )
    if res.get("compare"):
        c = res["compare"]
        parts += [
            f"<h3>The same description under each model: {_words(c['aliases'])}</h3>",
            f"<p class='note'>Rows, top to bottom: {esc(' · '.join(c['rows']))}.</p>",
            img(png_b64(root / c["image"]), "sym2img under each model"),
        ]
    if res["recombination"]:
        parts.append("<h3>Recombination (rows: first concept, second concept, the operator's result)</h3>")
        for item in res["recombination"]:
            title = f"{_words(item['a'])} <b>{esc(item['operator'])}</b> {_words(item['b'])} → {_words(item['result'])}"
            parts.append(
                f"<h4>{title} <span class='note'>(accuracy {_num(item['accuracy'])}, diversity {_num(item['diversity'])})</span></h4>"
                + img(png_b64(root / item["image"]), f"recombination {item['operator']}")
            )
    if res["img2sym"]:
        rows = "".join(
            f"<tr><td>{img(png_b64(root / row['image']), 'render')}</td><td>{_words(row['true'])}</td>"
            f"<td>{', '.join(f'{esc(w)} ({p:.2f})' for w, p in row['predicted'])}</td><td>{_num(row['correct'])}</td></tr>"
            for row in res["img2sym"]
        )
        parts += [
            "<h3>img2sym (fresh renders described by SCAN)</h3>",
            "<table><tr><th>image</th><th>true attributes</th><th>SCAN reads (probability)</th><th>fraction right</th></tr>"
            + rows + "</table>",
        ]
    return "\n".join(parts)
