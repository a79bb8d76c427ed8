"""The run report's matplotlib figures: each function returns a Figure, built from numbers the
stages wrote (nothing is recomputed but plotting arithmetic: smoothing, interpolation).

Every chart has a title and both axis labels with units; image panels (reconstructions,
traversals) label their rows and columns. ``tests/darla/test_report.py`` checks this on the
Figure objects.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: One colour per domain, in config order (source first), shared by every figure of the report.
PALETTE = ("#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#dd8452")
#: Learning curves: a moving average over this share of a seed's training episodes (at least 1).
SMOOTH_SHARE = 20


def domain_colour(j: int) -> str:
    return PALETTE[j % len(PALETTE)]


def fig_kl(kl: Sequence[float], order: Sequence[int]):
    fig, ax = plt.subplots(figsize=(6, 2.6))
    vals = [kl[i] for i in order]
    ax.bar(range(len(vals)), vals, color="#4c72b0")
    ax.set_xticks(range(len(vals)), [f"z{i}" for i in order], rotation=90, fontsize=7)
    ax.set_xlabel("latent (sorted by KL)")
    ax.set_ylabel("KL (nats)")
    ax.set_title("Per-latent KL to the prior, averaged over 1000 training frames", fontsize=9)
    return fig


#: What each stage-1 loss term is, and its unit (``recon`` depends on the likelihood).
VISION_TERMS = {
    "loss": ("total loss (minimised)", "nats / image"),
    "recon": ("reconstruction: −log p(x | z)", "nats / image"),
    "kl": ("KL(q(z | x) ‖ p(z)), all latents", "nats / image"),
    "tc": ("total correlation", "nats / image"),
    "capacity": ("KL capacity target C", "nats"),
}


def fig_vision_curves(history: dict[str, list[float]], likelihood: str | None = None):
    keys = [k for k in VISION_TERMS if history.get(k)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 2.8), squeeze=False)
    steps = history.get("step") or list(range(1, len(history.get(keys[0], [])) + 1 if keys else 1))
    for ax, k in zip(axes[0], keys):
        ax.plot(steps[: len(history[k])], history[k], lw=1, marker="o" if len(history[k]) < 10 else None, ms=3)
        title, unit = VISION_TERMS[k]
        if likelihood == "gaussian" and k in ("loss", "recon"):
            unit = "squared error / image" if k == "recon" else "loss / image"
        ax.set_title(f"vision/{k}: {title}", fontsize=8)
        ax.set_xlabel("training step (batches)", fontsize=8)
        ax.set_ylabel(unit, fontsize=8)
    if not keys:
        axes[0][0].set_title("no training history (a loaded checkpoint)", fontsize=8)
        axes[0][0].set_xlabel("training step (batches)", fontsize=8)
        axes[0][0].set_ylabel("loss", fontsize=8)
    fig.tight_layout()
    return fig


def _image_panel(png: Path, size: tuple[float, float]):
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))
    fig, ax = plt.subplots(figsize=size)
    ax.imshow(img, interpolation="nearest", aspect="equal")
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    return fig, ax, img.shape[0], img.shape[1]


def fig_traversals(png: Path, kl: Sequence[float], order: Sequence[int], n_steps: int = 9, limit: float = 2.5):
    """The stage's traversal grid (vision.traverse.traversal_grid) with its rows and columns named."""
    rows, cols = len(order), n_steps + 1
    width = 7.5
    fig, ax, h, w = _image_panel(png, (width, max(2.0, width * rows / cols * 0.8)))
    ax.set_xticks([(j + 0.5) * w / cols for j in range(cols)],
                  ["input\nframe", *(f"{v:+.1f}" for v in np.linspace(-limit, limit, n_steps))], fontsize=7)
    ax.set_yticks([(i + 0.5) * h / rows for i in range(rows)], [f"z{i}  KL {kl[i]:.2f}" for i in order], fontsize=7)
    ax.tick_params(length=0)
    ax.set_xlabel("value of the row's latent (prior s.d.); the others stay at the input frame's code", fontsize=8)
    ax.set_ylabel("latent, KL to the prior (nats)", fontsize=8)
    ax.set_title(f"Latent traversals, one row per latent, most KL first (±{limit} around one frame's code)", fontsize=9)
    return fig


def fig_reconstructions(png: Path, n: int = 8):
    """The stage's reconstruction grid (top: inputs, bottom: reconstructions) with its rows named."""
    fig, ax, h, w = _image_panel(png, (7.5, 2.3))
    ax.set_xticks([(j + 0.5) * w / n for j in range(n)], [str(j + 1) for j in range(n)], fontsize=7)
    ax.set_yticks([h / 4, 3 * h / 4], ["input", "reconstruction"], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel("training frame (random sample of the vision domain)", fontsize=8)
    ax.set_ylabel("row", fontsize=8)
    ax.set_title("Reconstructions from the posterior mean", fontsize=9)
    return fig


def read_monitor(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Episode returns against cumulative env steps, merged over a seed's monitor files."""
    eps: list[tuple[float, float, int]] = []
    for f in sorted(folder.glob("*.monitor.csv")):
        with open(f) as fh:
            next(fh, None)  # the JSON header line SB3's Monitor writes
            for row in csv.DictReader(fh):
                eps.append((float(row["t"]), float(row["r"]), int(row["l"])))
    if not eps:
        return np.zeros(0), np.zeros(0)
    eps.sort()
    steps = np.cumsum([e[2] for e in eps])
    return steps, np.array([e[1] for e in eps])


def smooth(steps: np.ndarray, rets: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(steps, moving average, window): a window of 1/:data:`SMOOTH_SHARE` of the episodes."""
    k = max(1, len(rets) // SMOOTH_SHARE)
    return steps[k - 1 :], np.convolve(rets, np.ones(k) / k, mode="valid"), k


def fig_agent_curves(
    curves: dict[str, dict[int, dict[str, Any]]], references: dict[str, float | None], algo: str, total_timesteps: int,
):
    """One panel per method: training-episode returns (mean over seeds, shaded min–max across
    seeds), source evaluations where the run logged them, and the random / oracle references.

    ``curves[method][seed]``: ``{"steps", "returns"}`` (monitor) and optionally ``"evals"``
    (evaluations.jsonl records).
    """
    methods = list(curves)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.8 * len(methods) + 1.8, 3.0), squeeze=False, sharey=True)
    grid = np.linspace(0, total_timesteps, 200)
    windows: set[int] = set()
    n_seeds = max((len(v) for v in curves.values()), default=0)
    for ax, method in zip(axes[0], methods):
        lines = []
        for c in curves[method].values():
            if len(c["returns"]):
                s, m, k = smooth(np.asarray(c["steps"]), np.asarray(c["returns"]))
                windows.add(k)
                lines.append(np.interp(grid, s, m, left=np.nan, right=np.nan))
        if lines:
            stack = np.array(lines)
            with np.errstate(all="ignore"), _quiet():
                mean = np.nanmean(stack, axis=0)
            ax.plot(grid, mean, lw=1.3, color="#4c72b0", label="training episodes" + (f" (mean of {len(lines)} seeds)" if len(lines) > 1 else ""))
            if len(lines) > 1:
                with _quiet():
                    ax.fill_between(grid, np.nanmin(stack, axis=0), np.nanmax(stack, axis=0), color="#4c72b0", alpha=0.2,
                                    lw=0, label="min–max across seeds")
        evals = [c["evals"] for c in curves[method].values() if c.get("evals")]
        if evals:
            xs = [e["timesteps"] for e in evals[0]]
            ys = np.array([[e["source"] for e in ev[: len(xs)]] for ev in evals if len(ev) >= len(xs)])
            if len(ys):
                ax.plot(xs, ys.mean(axis=0), "o-", ms=3, lw=1, color="#dd8452",
                        label="source evaluation" + (f" (mean of {len(ys)} seeds)" if len(ys) > 1 else ""))
            targets = [k for k in evals[0][0] if k not in ("timesteps", "source")] if evals[0] else []
            for j, dname in enumerate(targets):
                ty = np.array([[e[dname] for e in ev[: len(xs)]] for ev in evals if len(ev) >= len(xs)])
                ax.plot(xs, ty.mean(axis=0), "x--", ms=3, lw=0.7, color=domain_colour(j + 1), label=f"{dname} (logged only)")
        if references.get("random") is not None:
            ax.axhline(references["random"], color="k", lw=0.8, ls="--", label="random policy")
        if references.get("oracle") is not None:
            ax.axhline(references["oracle"], color="k", lw=0.8, ls=":", label="oracle (true state)")
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
        ax.set_ylabel("episode return (source domain)", fontsize=8)
        ax.set_xlim(0, total_timesteps)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    if not windows:
        window = "no training episodes"
    elif max(windows) == 1:
        window = "every training episode, unsmoothed"
    else:
        window = f"moving average over {min(windows)}" + (f"–{max(windows)}" if len(windows) > 1 else "") + f" training episodes (1/{SMOOTH_SHARE} of a seed's)"
    seeds = f"{n_seeds} seed" + ("s" if n_seeds != 1 else "") + (": no spread across seeds" if n_seeds == 1 else "")
    fig.suptitle(f"{algo.upper()} learning curves ({window}; {seeds})", fontsize=8)
    fig.tight_layout()
    return fig


class _quiet:
    """Silence numpy's all-NaN-slice warnings (a grid point past a seed's last episode)."""

    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def read_curves(
    agent_dir: Callable[[str, str, int], Path], methods: Sequence[str], seeds: Sequence[int], algo: str,
) -> dict[str, dict[int, dict[str, Any]]]:
    """What :func:`fig_agent_curves` plots, read from each policy's folder, ``agent_dir(method, algo, seed)``
    (:meth:`darla.runs.RunDir.agent_dir`)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for method in methods:
        for seed in seeds:
            folder = agent_dir(method, algo, seed)
            steps, rets = read_monitor(folder / "monitor")
            entry: dict[str, Any] = {"steps": steps, "returns": rets}
            evals = folder / "evaluations.jsonl"
            if evals.exists():
                entry["evals"] = [json.loads(x) for x in evals.read_text().splitlines() if x.strip()]
            out.setdefault(method, {})[seed] = entry
    return out


def _score_axis(transfer: dict[str, Any]) -> bool:
    """Normalised scores where every domain has random and oracle references."""
    t = transfer
    return all(t["methods"][m]["normalised"].get(d) for m in t.get("method_order", list(t["methods"])) for d in t["domains"])


def fig_transfer(transfer: dict[str, Any]):
    """Grouped bars: methods on x, one bar per domain (normalised IQM where references exist)."""
    t = transfer
    methods, domains = t.get("method_order", list(t["methods"])), list(t["domains"])
    use_norm = _score_axis(t)
    key = "normalised" if use_norm else "domains"
    width = 0.8 / len(domains)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(methods) * max(1, len(domains) / 2), 3.2))
    lows, highs = [], []
    for j, dname in enumerate(domains):
        vals = [t["methods"][m][key][dname] for m in methods]
        y = [v["iqm"] for v in vals]
        err = [[v["iqm"] - v["iqm_ci"][0] for v in vals], [v["iqm_ci"][1] - v["iqm"] for v in vals]]
        lows += [v["iqm_ci"][0] for v in vals]
        highs += [v["iqm_ci"][1] for v in vals]
        x = np.arange(len(methods)) + (j - (len(domains) - 1) / 2) * width
        ax.bar(x, y, width, yerr=err, capsize=3, label=dname, color=domain_colour(j))
    ax.set_xticks(range(len(methods)), methods, rotation=15, fontsize=8)
    ax.set_xlabel("method", fontsize=8)
    if use_norm:
        ax.axhline(0, color="k", lw=0.8, ls="--", label="random policy (0)")
        ax.axhline(1, color="k", lw=0.8, ls=":", label="oracle, true state (1)")
        lows.append(0.0)
        highs.append(1.0)
    else:
        ax.axhline(0, color="k", lw=0.5)
    lo, hi = min(lows), max(highs)
    pad = 0.08 * (hi - lo or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel("normalised score (IQM)" if use_norm else "episode return (IQM)", fontsize=8)
    n_seeds = len(next(iter(t["methods"].values()))["domains"]["source"]["per_seed"]) if methods else 0
    how = "95% stratified-bootstrap CI over seeds" if n_seeds > 1 else "1 seed: no CI"
    ax.set_title(f"Source vs zero-shot targets per method (IQM, {how})", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def read_episodes(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as f:
        return [{**r, "seed": int(r["seed"]), "ret": float(r["ret"])} for r in csv.DictReader(f)]


def fig_episodes(transfer: dict[str, Any], episodes: list[dict[str, Any]]):
    """Every evaluation episode (dots, seeds pooled) and a box per method and domain: the spread
    a seed-level CI does not show. Normalised like the bars where references exist."""
    t = transfer
    methods, domains = t.get("method_order", list(t["methods"])), list(t["domains"])
    use_norm = _score_axis(t)
    refs = t.get("references", {})
    width = 0.8 / len(domains)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(methods) * max(1, len(domains) / 2), 3.4))
    rng = np.random.default_rng(0)  # jitter only
    for j, dname in enumerate(domains):
        for i, method in enumerate(methods):
            r = np.array([e["ret"] for e in episodes if e["method"] == method and e["domain"] == dname])
            if not len(r):
                continue
            if use_norm:
                r = (r - refs[dname]["random"]) / (refs[dname]["oracle"] - refs[dname]["random"])
            x = i + (j - (len(domains) - 1) / 2) * width
            ax.boxplot([r], positions=[x], widths=width * 0.7, showfliers=False, patch_artist=True,
                       boxprops={"facecolor": "none", "edgecolor": domain_colour(j)}, medianprops={"color": domain_colour(j)},
                       whiskerprops={"color": domain_colour(j)}, capprops={"color": domain_colour(j)})
            ax.scatter(x + rng.uniform(-width * 0.3, width * 0.3, len(r)), r, s=7, alpha=0.6, color=domain_colour(j),
                       label=dname if i == 0 else None, zorder=3)
    ax.set_xticks(range(len(methods)), methods, rotation=15, fontsize=8)
    ax.set_xlim(-0.5, len(methods) - 0.5)
    ax.set_xlabel("method", fontsize=8)
    if use_norm:
        ax.axhline(0, color="k", lw=0.8, ls="--", label="random policy (0)")
        ax.axhline(1, color="k", lw=0.8, ls=":", label="oracle, true state (1)")
    ax.set_ylabel("normalised episode score" if use_norm else "episode return", fontsize=8)
    ax.set_title("Every evaluation episode (dots; seeds pooled) with its box (quartiles, whiskers 1.5 IQR)", fontsize=9)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig
