"""The sweep report: disentanglement vs transfer across the runs of a sweep (DARLA, fig. 5 style).

``darla report SWEEP_DIR`` reads ``sweep.json`` and, from each run directory, ``config.yaml``,
``vision/metrics.json`` (and ``vision/encoders/<method>/metrics.json`` for methods with their own
frozen encoder), ``vision/udr.json`` and ``transfer/summary.json``. It writes:

- ``sweep_results.csv``: one row per (run, method): vision model, β, seed, the sweep's keys, each
  metric's main score, UDR (with ``udr_source`` and ``udr_n_models``), source and target returns
  (mean, IQM [95% CI] over policy seeds), normalised scores per domain and their mean over
  targets (``target_score``), transfer ratios and their mean over targets;
- ``sweep_results.json``: the rows, the per-(model, β) groups and the correlations;
- ``darla_figure.png``: the DARLA figure, Spearman's ρ with its bootstrap CI for every metric
  against zero-shot target performance and against the transfer ratio (:func:`darla_figure`);
- ``sweep_report.html``: the figure and its table, one scatter per metric (base64 PNG) against the
  target score, which metric predicts transfer best, and the per-group and per-run tables. Every
  string is html-escaped.

The metrics are the main score of each registry metric in ``vision/metrics.json``, with DCI
split into its three scores (``dci_disentanglement``, ``dci_completeness``,
``dci_informativeness``: the test accuracy of its trees), UDR, and ``probe``: the mean over
factors of the MLP probe's test accuracy (``metrics.json``'s ``probe``; not a disentanglement
metric, it says how much of the ground truth a policy could read).

Four views of each (run, method)'s policy, the first three means over the target domains:
- ``target_score`` (the first view, whose best metric the report names): the normalised target
  score, (return − random) ÷ (oracle − random) on the same episodes, the policy seeds' mean. It
  is zero-shot *performance*, defined whether or not the source return is positive;
- ``target_score_learned``: the same, only for policies that learned the source task (normalised
  source score ≥ the sweep file's ``learned_min``, default :data:`LEARNED_MIN`). An agent at
  chance scores ≈ 0 everywhere, so across a sweep where some points never learned, ρ against the
  target score partly measures which encoders let the policy learn at all; this view asks the
  transfer question alone;
- ``transfer_ratio_mean``: target ÷ source mean return, how much of its source score the policy
  keeps (undefined where the source return is not positive);
- ``source_score``: the normalised source score, to read the others against: a metric that
  predicts the target score only as well as it predicts the source score says more about learning
  than about transfer.

UDR is the score of a run's frozen encoder among the *other seeds of the same stage-1
hyperparameters* in the sweep, as the sweep driver scored it into ``udr.json``
(:mod:`darla.sweep.udr`; ``udr_source = seeds``). The report loads no model. A run whose model has no such partner falls back to its own
``vision.select: udr`` score among its candidate seeds (``vision/udr.json``; ``udr_source =
candidates``), else it has no UDR.

Correlations use the methods whose policy sees a *frozen* encoder (``observe: latents``): a
fine-tuned or pixel policy is not the representation the metric scored. Each (run, method) is
one point; ρ's CI resamples points (pairs) with replacement from a seeded ``np.random.Generator``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats as sps  # noqa: E402

from darla.config import load_yaml  # noqa: E402
from darla.report.html import b64, base_css, esc, img, png_b64  # noqa: E402
from darla.runs import RunDir  # noqa: E402
from darla.sweep.udr import read_cross_run_udr  # noqa: E402
from vision.io import write_bytes_atomic, write_json_atomic, write_text_atomic  # noqa: E402

#: The transfer ratio of a row: the mean over targets of target ÷ source return.
TRANSFER_KEY = "transfer_ratio"
#: The DARLA figure, beside ``sweep_report.html`` (which embeds it).
FIGURE_FILE = "darla_figure.png"
#: Zero-shot target performance of a row: the mean over targets of the normalised target score.
TARGET_KEY = "target_score"
#: The target score of a row whose policy learned the source task, else undefined.
LEARNED_KEY = "target_score_learned"
#: The normalised source score at which a policy counts as having learned the source task: the
#: bar the quick preset must clear, clearly above chance (0) and short of the oracle (1). A sweep
#: file's ``learned_min`` replaces it, for an env where a policy that misses the task's point
#: still scores above it (reacher: a policy blind to the target).
LEARNED_MIN = 0.3
#: The views a metric is correlated with: row key → axis label. The first is the main one.
VIEWS: dict[str, str] = {
    TARGET_KEY: "normalised target score (mean over targets)",
    LEARNED_KEY: "target score, policies that learned (source ≥ {bar})",
    TRANSFER_KEY + "_mean": "transfer ratio (mean over targets)",
    "source_score": "normalised source score",
}
#: The DARLA figure's metrics, in its order; a sweep's other metrics follow them.
FIGURE_METRICS: tuple[str, ...] = (
    "beta_vae", "factor_vae", "mig", "dci_disentanglement", "dci_completeness", "dci_informativeness",
    "sap", "modularity", "udr", "probe",
)
#: DCI's three scores: row metric name → key in DCI's result.
DCI_SCORES: dict[str, str] = {
    "dci_disentanglement": "disentanglement", "dci_completeness": "completeness", "dci_informativeness": "informativeness_test",
}


# ---------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------
def spearman_bootstrap(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, reps: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Spearman's ρ of paired samples, with a percentile-bootstrap CI over pairs.

    Each replicate draws ``n`` pair indices with ``np.random.default_rng(seed).integers(0, n,
    (reps, n))`` (one matrix, so the result is a pure function of the seed) and computes ρ on the
    resample; replicates where x or y is constant (ρ undefined) are dropped and counted. Returns
    ``rho``, ``p`` (scipy), ``ci`` ([lo, hi] or None), ``n``, ``reps_used``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d and paired, got shapes {x.shape} and {y.shape}")
    n = len(x)
    if n < 3:
        return {"rho": None, "p": None, "ci": None, "n": n, "reps_used": 0}
    with warnings.catch_warnings():  # constant input: ρ undefined, reported as None below
        warnings.simplefilter("ignore", sps.ConstantInputWarning)
        res = sps.spearmanr(x, y)
    rho = float(res.statistic) if np.isfinite(res.statistic) else None
    p = float(res.pvalue) if np.isfinite(res.pvalue) else None
    idx = np.random.default_rng(seed).integers(0, n, size=(reps, n))
    rx = sps.rankdata(x[idx], axis=1)
    ry = sps.rankdata(y[idx], axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    ok = denom > 0
    boot = (rx * ry).sum(axis=1)[ok] / denom[ok]
    ci = None
    if boot.size:
        alpha = (1 - confidence) / 2
        ci = [float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))]
    return {"rho": rho, "p": p, "ci": ci, "n": n, "reps_used": int(ok.sum())}


def _iqm_ci(values: Sequence[float], seed: int) -> dict[str, Any]:
    """IQM over runs with rliable's bootstrap CI (the same statistics as a run's report)."""
    from agents.stats import bootstrap_ci, iqm

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"iqm": None, "ci": None, "n": 0}
    ci = bootstrap_ci(v, seed=seed)["iqm"]
    return {"iqm": iqm(v), "ci": [float(ci[0]), float(ci[1])], "n": int(v.size)}


# ---------------------------------------------------------------------------------------------
# collection
# ---------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def _main_scores(metrics_json: Any) -> dict[str, float]:
    """metric name → score: each metric's main score (the value under its own name), DCI as its
    three scores (:data:`DCI_SCORES`), and ``probe``, the mean over factors of the MLP probe."""
    out = {}
    metrics_json = metrics_json or {}
    for name, vals in (metrics_json.get("metrics") or {}).items():
        if not isinstance(vals, dict):
            continue
        if name == "dci":
            for row_name, key in DCI_SCORES.items():
                if (v := _finite(vals.get(key))) is not None:
                    out[row_name] = v
        elif (v := _finite(vals.get(name))) is not None:
            out[name] = v
    probe = metrics_json.get("probe")
    if isinstance(probe, dict) and probe:
        accs = [_finite(a) for a in probe.values()]
        if all(a is not None for a in accs):
            out["probe"] = float(np.mean(accs))
    return out


def _ordered(names: list[str]) -> list[str]:
    """The figure's metrics in its order, then any others in the order they were met."""
    return [m for m in FIGURE_METRICS if m in names] + [m for m in names if m not in FIGURE_METRICS]


def _target_score(normalised: dict[str, Any], targets: Sequence[str]) -> float | None:
    """Mean over targets of the normalised score (policy seeds' mean); None unless every target has one."""
    vals = [_finite((normalised.get(t) or {}).get("mean")) for t in targets]
    return float(np.mean(vals)) if vals and all(v is not None for v in vals) else None


def _udr(run_dir: Path) -> float | None:
    """UDR of the encoder stage 2 used (vision.select: udr): its score among the candidates."""
    u = _read_json(RunDir(run_dir).vision_dir() / "udr.json")
    if not u or "scores" not in u or "best" not in u:
        return None
    v = u["scores"][u["best"]]
    return float(v) if v is not None else None


#: ``udr_source`` of a row: scored among the sweep's seeds, or among its run's own candidates.
UDR_SOURCES = ("seeds", "candidates")
NO_UDR: dict[str, Any] = {"udr": None, "udr_source": None, "udr_n_models": None}


def _row_udr(run_dir: Path, run: str, method: str, cross: dict[str, Any]) -> dict[str, Any]:
    """``udr``, ``udr_source`` and ``udr_n_models`` of one model: cross-run first, else within-run.

    ``method`` is ``""`` for the run's ``vision.model``, else the method whose own encoder it is.
    """
    c = cross["scores"].get((run, method))
    if c is not None and c.score is not None:
        return {"udr": c.score, "udr_source": "seeds", "udr_n_models": c.n_models}
    if method == "":
        within = _udr(run_dir)
        if within is not None:
            u = _read_json(RunDir(run_dir).vision_dir() / "udr.json") or {}
            return {"udr": within, "udr_source": "candidates", "udr_n_models": len(u.get("scores") or [])}
    return dict(NO_UDR)


def collect_sweep(sweep_dir: Path) -> dict[str, Any]:
    """Rows (one per run and method) with every number the report shows, read from the files the
    runs and the sweep driver wrote (cross-run UDR from ``udr.json``); ``udr`` in the result
    summarises its populations."""
    sweep_dir = Path(sweep_dir)
    state = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    cross = read_cross_run_udr(sweep_dir)
    keys = list(state.get("keys", []))
    bar = learned_bar(state)
    rows: list[dict[str, Any]] = []
    targets: list[str] = []
    metric_names: list[str] = []
    for run in state["runs"]:
        rdir = sweep_dir / run["dir"]
        cfg = load_yaml(rdir / "config.yaml") if (rdir / "config.yaml").exists() else {}
        cfg = cfg or {}
        vision = cfg.get("vision", {})
        summary = _read_json(rdir / "transfer" / "summary.json")
        base = {
            "run": run["name"], "status": run.get("status", "pending"), "seed": cfg.get("seed"),
            "overrides": {k: run.get("overrides", {}).get(k) for k in keys},
        }
        if not summary:
            scores = _main_scores(_read_json(RunDir(rdir).vision_dir() / "metrics.json"))
            metric_names += [m for m in scores if m not in metric_names]
            rows.append({**base, "method": "", "encoder": "", "model": vision.get("model", ""), "beta": vision.get("beta"),
                         "frozen": False, "metrics": scores, **_row_udr(rdir, run["name"], "", cross),
                         "domains": {}, "normalised": {}, "source_score": None, TARGET_KEY: None, LEARNED_KEY: None,
                         "transfer_ratio": {}, TRANSFER_KEY + "_mean": None})
            continue
        run_targets = list(summary["domains"][1:])
        for t in run_targets:
            if t not in targets:
                targets.append(t)
        methods = cfg.get("methods") or {}  # a run's resolved config names at least one
        for method, res in summary["methods"].items():
            m = methods.get(method, {"encoder": "vision"})
            enc = m.get("encoder", "vision")
            finetune = bool(m.get("finetune", False))
            if enc == "vision":
                model, beta, folder = vision.get("model", ""), vision.get("beta"), RunDir(rdir).vision_dir()
            elif enc == "pixels":
                model, beta, folder = "pixels", None, None
            else:
                model, beta, folder = enc, (m.get("params") or {}).get("beta"), RunDir(rdir).vision_dir(method)
            scores = _main_scores(_read_json(folder / "metrics.json")) if folder else {}
            metric_names += [k for k in scores if k not in metric_names]
            ratios = {t: r for t, r in res.get("transfer_ratio", {}).items()}
            valid = [r for r in ratios.values() if r is not None and math.isfinite(r)]
            norm = {d: {k: s.get(k) for k in ("mean", "iqm", "iqm_ci")} for d, s in (res.get("normalised") or {}).items()}
            source_score = _finite((norm.get("source") or {}).get("mean"))
            target_score = _target_score(norm, run_targets)
            rows.append({
                **base, "method": method, "encoder": enc, "model": model, "beta": beta,
                "frozen": enc != "pixels" and not finetune,
                "metrics": scores,
                **(_row_udr(rdir, run["name"], "" if enc == "vision" else method, cross) if folder else NO_UDR),
                "domains": {d: {k: s.get(k) for k in ("mean", "std", "iqm", "iqm_ci", "n_seeds")} for d, s in res["domains"].items()},
                "normalised": norm, "source_score": source_score, TARGET_KEY: target_score,
                LEARNED_KEY: target_score if source_score is not None and source_score >= bar else None,
                "transfer_ratio": ratios, TRANSFER_KEY + "_mean": float(np.mean(valid)) if valid else None,
            })
    udr = {k: v for k, v in cross.items() if k != "scores"}  # the rest is JSON: populations, settings
    return {"name": state.get("name", sweep_dir.name), "keys": keys, "targets": targets, "metrics": _ordered(metric_names),
            "rows": rows, "udr": udr, "learned_min": bar}


def learned_bar(data: dict[str, Any]) -> float:
    """The sweep's "learned the source task" bar: ``learned_min`` of ``sweep.json`` (from the sweep
    file) or of collected data, else :data:`LEARNED_MIN`."""
    bar = data.get("learned_min")
    return LEARNED_MIN if bar is None else float(bar)


def view_label(key: str, data: dict[str, Any], labels: dict[str, str] = VIEWS) -> str:
    """A view's label (:data:`VIEWS` or :data:`VIEW_SHORT`), with the sweep's learned bar filled in."""
    return labels.get(key, key).replace("{bar}", f"{learned_bar(data):g}")


def _x(row: dict[str, Any], name: str) -> float | None:
    return row.get("udr") if name == "udr" else row["metrics"].get(name)


def correlations(data: dict[str, Any], *, seed: int = 0, reps: int = 2000) -> dict[str, Any]:
    """Spearman ρ (bootstrap CI) between each metric (and UDR) and each view of transfer, and the best.

    ``views`` has one entry per :data:`VIEWS` key: ``per_metric`` (ρ, p, CI, n and the points) and
    ``best``. ``per_metric`` and ``best`` at the top level are the first view's (zero-shot target
    performance); ``y`` names it. Points are the rows whose policy saw a frozen encoder, with both
    values defined. Every metric and view uses the same bootstrap seed.

    "Best" is the largest ρ: DARLA's claim is that *more* disentangled models transfer *better*, so
    a metric that anti-correlates is not a predictor to select models by. UDR needs no labels.
    """
    names = _ordered([*data["metrics"], "udr"])
    views: dict[str, Any] = {}
    for y_key in VIEWS:
        out: dict[str, Any] = {}
        for name in names:
            pts = [(x, r[y_key]) for r in data["rows"]
                   if r["frozen"] and (x := _x(r, name)) is not None and r.get(y_key) is not None]
            if name == "udr" and not pts:
                continue
            xs, ys = (np.array([p[i] for p in pts], dtype=np.float64) for i in (0, 1))
            out[name] = {**spearman_bootstrap(xs, ys, reps=reps, seed=seed), "x": xs.tolist(), "y": ys.tolist()}
        ranked = [(v["rho"], k) for k, v in out.items() if v["rho"] is not None]
        views[y_key] = {"per_metric": out, "best": max(ranked)[1] if ranked else None, "label": view_label(y_key, data)}
    main = next(iter(VIEWS))
    missing = [m for m in FIGURE_METRICS if m not in views[main]["per_metric"]]
    order = [m for m in names if any(m in v["per_metric"] for v in views.values())]
    return {"per_metric": views[main]["per_metric"], "best": views[main]["best"], "y": main, "views": views,
            "order": order, "missing": missing, "seed": seed, "reps": reps}


def groups(data: dict[str, Any], *, seed: int = 0) -> list[dict[str, Any]]:
    """Per (vision model, β): runs, mean metric scores, and IQM [CI] over runs of returns and ratio."""
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in data["rows"]:
        if r["method"]:
            keyed.setdefault((str(r["model"]), "" if r["beta"] is None else str(r["beta"])), []).append(r)
    out = []
    for (model, beta), rows in keyed.items():
        g: dict[str, Any] = {"model": model, "beta": beta, "n_runs": len(rows)}
        g["metrics"] = {
            m: float(np.mean(v)) for m in data["metrics"] if (v := [r["metrics"][m] for r in rows if m in r["metrics"]])
        }
        udrs = [r["udr"] for r in rows if r["udr"] is not None]
        g["udr"] = float(np.mean(udrs)) if udrs else None
        for d in ["source", *data["targets"]]:
            g[d] = _iqm_ci([r["domains"].get(d, {}).get("mean") for r in rows if d in r["domains"]], seed)
        g[TARGET_KEY] = _iqm_ci([r.get(TARGET_KEY) for r in rows], seed)
        g[TRANSFER_KEY] = _iqm_ci([r[TRANSFER_KEY + "_mean"] for r in rows], seed)
        out.append(g)
    return out


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def csv_rows(data: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    fixed = ["run", "status", "method", "encoder", "model", "beta", "seed"]
    keys = [k for k in data["keys"] if k not in fixed]  # the sweep's seeds are the seed column
    header = [*fixed, *keys]
    header += [f"metric/{m}" for m in data["metrics"]] + ["udr", "udr_source", "udr_n_models"]
    for d in ["source", *data["targets"]]:
        header += [f"{d}/mean", f"{d}/iqm", f"{d}/iqm_ci_lo", f"{d}/iqm_ci_hi"]
    header += [f"normalised/{d}" for d in ["source", *data["targets"]]] + [TARGET_KEY]
    header += [f"transfer_ratio/{t}" for t in data["targets"]] + [TRANSFER_KEY + "_mean"]
    out = []
    for r in data["rows"]:
        row: list[Any] = [r["run"], r["status"], r["method"], r["encoder"], r["model"], r["beta"], r["seed"]]
        row += [json.dumps(r["overrides"].get(k)) if isinstance(r["overrides"].get(k), (list, dict)) else r["overrides"].get(k) for k in keys]
        row += [r["metrics"].get(m) for m in data["metrics"]] + [r["udr"], r.get("udr_source"), r.get("udr_n_models")]
        for d in ["source", *data["targets"]]:
            s = r["domains"].get(d) or {}
            ci = s.get("iqm_ci") or [None, None]
            row += [s.get("mean"), s.get("iqm"), ci[0], ci[1]]
        norm = r.get("normalised") or {}
        row += [(norm.get(d) or {}).get("mean") for d in ["source", *data["targets"]]] + [r.get(TARGET_KEY)]
        row += [r["transfer_ratio"].get(t) for t in data["targets"]] + [r[TRANSFER_KEY + "_mean"]]
        out.append(["" if v is None else v for v in row])
    return header, out


def _scatter(name: str, corr: dict[str, Any], data: dict[str, Any], y_key: str = TARGET_KEY) -> str:
    """One metric: x = its score, y = one view of transfer (:data:`VIEWS`), one colour per vision model."""
    pts = [r for r in data["rows"] if r["frozen"] and r.get(y_key) is not None and _x(r, name) is not None]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    models = sorted({str(r["model"]) for r in pts})
    cmap = plt.get_cmap("tab10")
    for i, model in enumerate(models):
        mine = [r for r in pts if str(r["model"]) == model]
        ax.scatter([_x(r, name) for r in mine], [r[y_key] for r in mine], color=cmap(i % 10), label=model, s=28)
    rho = corr["rho"]
    ci = corr["ci"]
    title = f"{name}: ρ = {rho:.2f}" if rho is not None else f"{name}: ρ n/a"
    if ci:
        title += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    ax.set_title(title + f", n = {corr['n']}", fontsize=9, usetex=False)
    ax.set_xlabel("UDR (no labels)" if name == "udr" else name, usetex=False)
    ax.set_ylabel(view_label(y_key, data), fontsize=8)
    for t in (ax.title, ax.xaxis.label):
        t.set_parse_math(False)  # a '$' in a name is text, not mathtext
    if models:
        leg = ax.legend(fontsize=7)
        for t in leg.get_texts():
            t.set_parse_math(False)
    ax.grid(alpha=0.3)
    return png_b64(fig, dpi=100)


def darla_figure(corr: dict[str, Any]) -> bytes:
    """The DARLA figure as PNG: per metric, Spearman's ρ with its bootstrap CI against each view of
    transfer (one marker per view), metrics top to bottom in :data:`FIGURE_METRICS` order."""
    views = corr["views"]
    names = corr["order"]
    fig, ax = plt.subplots(figsize=(6.4, 0.15 * len(views) * max(len(names), 1) + 1.6))
    styles = [("o", "#1f77b4"), ("D", "#2ca02c"), ("s", "#ff7f0e"), ("^", "#7f7f7f")]
    for j, view in enumerate(views.values()):
        marker, colour = styles[j % len(styles)]
        first = True
        for i, name in enumerate(names):
            c = view["per_metric"].get(name)
            if not c or c["rho"] is None:
                continue
            y = i + (j - (len(views) - 1) / 2) * 0.8 / len(views)
            if c["ci"]:  # a percentile CI need not contain ρ itself, so it is drawn as its own segment
                ax.plot(c["ci"], [y, y], color=colour, lw=1.5, solid_capstyle="butt")
                ax.plot(c["ci"], [y, y], ls="none", marker="|", color=colour, ms=7)
            ax.plot([c["rho"]], [y], ls="none", marker=marker, color=colour, ms=5, label=view["label"] if first else None)
            first = False
    labels = []
    for name in names:
        cs = [v["per_metric"][name] for v in views.values() if name in v["per_metric"]]
        undefined = "; ρ n/a" if all(c["rho"] is None for c in cs) else ""
        labels.append(("UDR (no labels)" if name == "udr" else name) + f"  (n = {' / '.join(str(c['n']) for c in cs)}{undefined})")
    ax.set_yticks(range(len(names)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.0, color="#888", lw=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman ρ with 95% bootstrap CI")
    ax.set_title("Which representation property predicts zero-shot transfer?", fontsize=10)
    for t in [*ax.get_yticklabels(), ax.title]:
        t.set_parse_math(False)
    if any(h for h in ax.get_legend_handles_labels()[0]):
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, 1.06), ncol=1, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


CSS = base_css(1100, ".85") + """th{background:#f4f4f4} .note{color:#666;font-size:.85em} .figs img{margin:.3em}
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _ci_text(s: dict[str, Any] | None) -> str:
    if not s or s.get("iqm") is None:
        return ""
    lo, hi = s["ci"] if s.get("ci") else (s["iqm"], s["iqm"])
    return f"{s['iqm']:.2f} [{lo:.2f}, {hi:.2f}] (n={s['n']})"


def udr_note(data: dict[str, Any]) -> str:
    """Where the UDR numbers come from, in one plain-text paragraph (escape it for HTML)."""
    u = data.get("udr") or {}
    pops = u.get("populations") or []
    scored = [p for p in pops if p.get("scores")]
    rows = [r for r in data["rows"] if r.get("udr") is not None]
    by_seeds = sum(r.get("udr_source") == "seeds" for r in rows)
    by_cands = sum(r.get("udr_source") == "candidates" for r in rows)
    parts = []
    if scored:
        sizes = sorted({p["n_models"] for p in scored})
        n = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
        parts.append(
            f"UDR: across {n} seeds of the same hyperparameters (Duan et al. 2020): {len(scored)} population(s) of "
            f"models whose stage-1 settings differ only in seed, each model scored by the median over its partners "
            f"on {u.get('num_images')} images rendered from the vision domain (factor seed {u.get('image_seed')}); "
            f"{by_seeds} row(s). Scored by the sweep driver into udr.json."
        )
    if by_cands:
        parts.append(f"{by_cands} row(s): UDR among their run's own vision.select: udr candidates (vision/udr.json).")
    alone = sum(1 for p in pops if p["n_models"] < 2)
    if alone:
        parts.append(f"{alone} model population(s) of a single seed: no UDR (it needs ≥ 2 seeds of the same hyperparameters).")
    failed = [p for p in pops if p.get("error")]
    for p in failed:
        parts.append(f"UDR failed for population {p['key']}: {p['error']}")
    for why in u.get("skipped") or []:
        parts.append(f"Not in any UDR population: {why}.")
    if u.get("stale"):
        parts.append(f"No UDR for {len(u['stale'])} model(s) retrained since udr.json was written "
                     f"({', '.join(u['stale'])}): run the sweep again to score them.")
    if u.get("missing"):
        parts.append("UDR across seeds is not scored yet (no udr.json): run the sweep again (darla sweep SWEEP_FILE); "
                     "complete runs are skipped and only UDR is computed.")
    if not parts:
        parts.append("UDR: no run has a seed partner with the same hyperparameters, nor vision.select: udr; add seeds: to the sweep.")
    return " ".join(parts)


def _ci_cell(c: dict[str, Any] | None) -> str:
    if not c or c["rho"] is None:
        return "n/a" if c else ""
    return f"{c['rho']:.2f}" + (f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]" if c["ci"] else "")


def figure_rows(corr: dict[str, Any]) -> list[list[Any]]:
    """The DARLA figure's table: per metric, per view: ρ [CI], points, p."""
    views = corr["views"]
    names = corr["order"]
    rows = []
    for name in names:
        row: list[Any] = [name]
        for v in views.values():
            c = v["per_metric"].get(name)
            row += [_ci_cell(c), "" if not c else c["n"], "" if not c or c["p"] is None else f"{c['p']:.2g}"]
        rows.append(row)
    return rows


def _learned_note(data: dict[str, Any], corr: dict[str, Any]) -> str:
    """How well the policies behind the main view's points did on the source domain."""
    scores = [r["source_score"] for r in data["rows"] if r["frozen"] and r.get(corr["y"]) is not None
              and r.get("source_score") is not None]
    if not scores:
        return ""
    q = np.quantile(scores, [0.0, 0.5, 1.0])
    bar = learned_bar(data)
    learned = sum(s >= bar for s in scores)
    return (f"Source-domain normalised score of the policies behind these points: min {q[0]:.2f}, median {q[1]:.2f}, "
            f"max {q[2]:.2f}; {learned} of {len(scores)} learned the source task (≥ {bar:g}). Transfer is only "
            "meaningful for policies that learned it: points near 0 are agents at chance, whose target score measures "
            "nothing about their vision. The view restricted to the policies that learned asks the transfer question "
            "alone; the source-score view shows how much of a metric's ρ is about learning at all.")


def render_sweep_html(data: dict[str, Any], corr: dict[str, Any], grp: list[dict[str, Any]], figure_png: bytes | None = None) -> str:
    per = corr["per_metric"]
    best = corr["best"]
    if best is None:
        verdict = ("No metric has a defined correlation yet (it needs ≥ 3 finished runs with a scored, frozen encoder and "
                   "a normalised target score, i.e. an env with an oracle).")
    else:
        b = per[best]
        ci = b["ci"]
        sure = ci is not None and ci[0] > 0
        verdict = (
            f"<b>{esc(best)}</b>{' (UDR, no labels)' if best == 'udr' else ''} predicts zero-shot target performance best: "
            f"Spearman ρ = {b['rho']:.2f}" + (f", 95% bootstrap CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + f" over {b['n']} points. "
            + ("Its CI excludes 0." if sure else "Its CI includes 0: with this many runs it is not distinguishable from no correlation.")
        )
    view_labels = [v["label"] for v in corr["views"].values()]
    f_header = ["metric"]
    for label in view_labels:
        f_header += [f"ρ vs {label} [95% CI]", "points", "p"]
    missing = corr.get("missing") or []
    missing_note = (
        f"Not in this sweep: {', '.join(missing)}. Enable them with metrics.enabled: [all] (DCI's three scores come "
        "with dci, the probe with dci or metrics.probe: true); UDR needs ≥ 2 seeds of the same stage-1 settings."
        if missing else ""
    )
    fig_html = img(b64(figure_png), "the DARLA figure") if figure_png else ""
    figs = "".join(img(_scatter(name, c, data), f"{name} vs target score") for name, c in per.items())
    g_header = ["vision model", "β", "runs", *[f"{m}" for m in data["metrics"]], "UDR",
                "source return IQM [CI]", *[f"{t} return IQM [CI]" for t in data["targets"]], "target score IQM [CI]",
                "transfer ratio IQM [CI]"]
    g_rows = [
        [g["model"], g["beta"], g["n_runs"], *[g["metrics"].get(m) for m in data["metrics"]], g["udr"],
         _ci_text(g["source"]), *[_ci_text(g[t]) for t in data["targets"]], _ci_text(g.get(TARGET_KEY)),
         _ci_text(g[TRANSFER_KEY])]
        for g in grp
    ]
    header, rows = csv_rows(data)
    n_done = len({r["run"] for r in data["rows"] if r["method"]})
    n_runs = len({r["run"] for r in data["rows"]})
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>darla sweep — {esc(data['name'])}</title><style>{CSS}</style></head><body>",
        f"<h1>DARLA sweep: {esc(data['name'])}</h1>",
        f"<p>{n_done} of {n_runs} runs have transfer results. Swept keys: {esc(', '.join(data['keys']) or '—')}.</p>",
        "<h2>The DARLA figure: which representation property predicts zero-shot transfer?</h2>",
        "<p>DARLA (Higgins et al. 2017) reports that more disentangled vision transfers better; Dittadi et al. "
        "(ICLR 2021, 2022) ask which properties of a representation predict out-of-distribution transfer. "
        "Per metric, Spearman's ρ across this sweep's representations against zero-shot target performance, "
        "and against the transfer ratio. A CI above 0 supports a positive correlation for that metric; a CI "
        "that spans 0 supports none.</p>",
        f"<p>{verdict}</p>", fig_html,
        _table(f_header, figure_rows(corr)), "<p class='note'>Also in sweep_results.json (correlations.views) and "
        "darla_figure.png.</p>",
        f"<p class='note'>{esc(missing_note)}</p>" if missing_note else "",
        f"<p class='note'>{esc(_learned_note(data, corr))}</p>",
        "<p class='note'>Target score: the mean over target domains of the normalised score (return − random) ÷ "
        "(oracle − random), each the mean over policy seeds. Transfer ratio: the mean over targets of target ÷ source mean "
        "return (undefined where the source return is not positive). Points: (run, method) pairs whose policy saw a "
        "frozen encoder scored by the metric. DCI's three scores are separate points (informativeness: its trees' "
        "test accuracy); probe: the MLP probe's mean test accuracy over factors. CI: percentile bootstrap over points "
        f"(seed {corr.get('seed', 0)}, {corr.get('reps', '')} resamples). Best = largest ρ against the target score.</p>",
        f"<p class='note udr'>{esc(udr_note(data))}</p>",
        "<h3>Each metric against the target score</h3>",
        f"<div class='figs'>{figs}</div>",
        "<h2>Per vision model and β</h2>", _table(g_header, g_rows),
        "<p class='note'>Metric and UDR columns: mean over runs. Returns and ratio: IQM over runs of each run's mean "
        "(stratified bootstrap CI, rliable).</p>",
        "<h2>Every run</h2>", _table(header, rows),
        "<p class='note'>Also in sweep_results.csv (same columns) and sweep_results.json.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_sweep_report(sweep_dir: Path, *, seed: int = 0, reps: int = 2000) -> list[Path]:
    """Write ``sweep_results.csv``, ``sweep_results.json``, the DARLA figure and ``sweep_report.html``
    into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    data = collect_sweep(sweep_dir)
    corr = correlations(data, seed=seed, reps=reps)
    grp = groups(data, seed=seed)
    header, rows = csv_rows(data)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    figure = darla_figure(corr)
    paths = [sweep_dir / "sweep_results.csv", sweep_dir / "sweep_results.json", sweep_dir / FIGURE_FILE,
             sweep_dir / "sweep_report.html"]
    write_text_atomic(paths[0], buf.getvalue())
    write_json_atomic(paths[1], {**data, "groups": grp, "correlations": corr})
    write_bytes_atomic(paths[2], figure)
    write_text_atomic(paths[3], render_sweep_html(data, corr, grp, figure))
    return paths


#: Short column names of the views in the console table.
VIEW_SHORT: dict[str, str] = {
    TARGET_KEY: "target score", LEARNED_KEY: "target, learned (≥ {bar})",
    TRANSFER_KEY + "_mean": "transfer ratio", "source_score": "source score",
}


def summary_lines(sweep_dir: Path) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The DARLA figure's table for the console, from ``sweep_results.json``: its header (per view,
    the points and ρ) and one row per metric."""
    res = json.loads((Path(sweep_dir) / "sweep_results.json").read_text(encoding="utf-8"))
    corr = res["correlations"]
    keys = [*[k for k in VIEWS if k in corr["views"]], *[k for k in corr["views"] if k not in VIEWS]]  # JSON sorts keys
    views = [corr["views"][k] for k in keys]
    header = ("metric (* best)", *[c for k in keys for c in ("points", f"ρ vs {view_label(k, res, VIEW_SHORT)} [95% CI]")])
    out = []
    for name in corr["order"]:
        row = [name + (" *" if name == corr["best"] else "")]
        for v in views:
            c = v["per_metric"].get(name)
            row += ["" if not c else str(c["n"]), _ci_cell(c)]
        out.append(tuple(row))
    return header, out
