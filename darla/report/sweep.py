"""The sweep report: disentanglement vs transfer across the runs of a sweep (DARLA, fig. 5 style).

``darla report SWEEP_DIR`` reads ``sweep.json`` and, from each run directory, ``config.yaml``,
``vision/metrics.json`` (and ``vision/encoders/<method>/metrics.json`` for methods with their own
frozen encoder), ``vision/udr.json`` and ``transfer/summary.json``. It writes:

- ``sweep_results.csv``: one row per (run, method): vision model, β, seed, the sweep's keys, each
  metric's main score, UDR (with ``udr_source`` and ``udr_n_models``), source and target returns
  (mean, IQM [95% CI] over policy seeds), transfer ratios and their mean over targets (the
  transfer score);
- ``sweep_results.json``: the rows, the per-(model, β) groups and the correlations;
- ``sweep_report.html``: the same tables, one scatter per metric (base64 PNG) with Spearman's ρ and
  a bootstrap CI, and which metric predicts transfer best. Every string is html-escaped.

UDR is the score of a run's frozen encoder among the *other seeds of the same stage-1
hyperparameters* in the sweep (:mod:`darla.report.sweep_udr`, cached in ``udr.json``;
``udr_source = seeds``). A run whose model has no such partner falls back to its own
``vision.select: udr`` score among its candidate seeds (``vision/udr.json``; ``udr_source =
candidates``), else it has no UDR.

Correlations use the methods whose policy sees a *frozen* encoder (``observe: latents``): a
fine-tuned or pixel policy is not the representation the metric scored. Each (run, method) is
one point; ρ's CI resamples points (pairs) with replacement from a seeded ``np.random.Generator``.
"""

from __future__ import annotations

import base64
import csv
import html
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
from darla.report.sweep_udr import NUM_IMAGES, cross_run_udr  # noqa: E402
from darla.runs import write_json_atomic, write_text_atomic  # noqa: E402

#: The transfer score a metric is correlated with: the mean over targets of target ÷ source return.
TRANSFER_KEY = "transfer_ratio"


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def is_sweep_dir(path: Path) -> bool:
    return (Path(path) / "sweep.json").is_file()


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


def _main_scores(metrics_json: Any) -> dict[str, float]:
    """metric name → its main score (the value under its own name)."""
    out = {}
    metrics = (metrics_json or {}).get("metrics", {})
    for name, vals in metrics.items():
        v = vals.get(name) if isinstance(vals, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = float(v)
    return out


def _udr(run_dir: Path) -> float | None:
    """UDR of the encoder stage 2 used (vision.select: udr): its score among the candidates."""
    u = _read_json(run_dir / "vision" / "udr.json")
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
            u = _read_json(run_dir / "vision" / "udr.json") or {}
            return {"udr": within, "udr_source": "candidates", "udr_n_models": len(u.get("scores") or [])}
    return dict(NO_UDR)


def _methods(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    methods = cfg.get("methods") or {}
    if not methods:  # a config written before methods: existed; the default is vision's encoder
        methods = {cfg.get("vision", {}).get("model", "vision"): {"encoder": "vision"}}
    return methods


def collect_sweep(sweep_dir: Path, *, udr_images: int = NUM_IMAGES) -> dict[str, Any]:
    """Rows (one per run and method) with every number the report shows.

    Everything is read from files except cross-run UDR, which loads the models of every
    population of ≥ 2 seeds once (``udr_images`` images each) and caches the scores in
    ``udr.json``; ``udr`` in the result summarises the populations.
    """
    sweep_dir = Path(sweep_dir)
    state = json.loads((sweep_dir / "sweep.json").read_text(encoding="utf-8"))
    cross = cross_run_udr(sweep_dir, state, num_images=udr_images)
    keys = list(state.get("keys", []))
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
            scores = _main_scores(_read_json(rdir / "vision" / "metrics.json"))
            metric_names += [m for m in scores if m not in metric_names]
            rows.append({**base, "method": "", "encoder": "", "model": vision.get("model", ""), "beta": vision.get("beta"),
                         "frozen": False, "metrics": scores, **_row_udr(rdir, run["name"], "", cross),
                         "domains": {}, "transfer_ratio": {}, TRANSFER_KEY + "_mean": None})
            continue
        for t in summary["domains"][1:]:
            if t not in targets:
                targets.append(t)
        methods = _methods(cfg)
        for method, res in summary["methods"].items():
            m = methods.get(method, {"encoder": "vision"})
            enc = m.get("encoder", "vision")
            finetune = bool(m.get("finetune", False))
            if enc == "vision":
                model, beta, folder = vision.get("model", ""), vision.get("beta"), rdir / "vision"
            elif enc == "pixels":
                model, beta, folder = "pixels", None, None
            else:
                model, beta, folder = enc, (m.get("params") or {}).get("beta"), rdir / "vision" / "encoders" / method
            scores = _main_scores(_read_json(folder / "metrics.json")) if folder else {}
            metric_names += [k for k in scores if k not in metric_names]
            ratios = {t: r for t, r in res.get("transfer_ratio", {}).items()}
            valid = [r for r in ratios.values() if r is not None and math.isfinite(r)]
            rows.append({
                **base, "method": method, "encoder": enc, "model": model, "beta": beta,
                "frozen": enc != "pixels" and not finetune,
                "metrics": scores,
                **(_row_udr(rdir, run["name"], "" if enc == "vision" else method, cross) if folder else NO_UDR),
                "domains": {d: {k: s.get(k) for k in ("mean", "std", "iqm", "iqm_ci", "n_seeds")} for d, s in res["domains"].items()},
                "transfer_ratio": ratios, TRANSFER_KEY + "_mean": float(np.mean(valid)) if valid else None,
            })
    udr = {k: v for k, v in cross.items() if k != "scores"}  # the rest is JSON: populations, settings
    return {"name": state.get("name", sweep_dir.name), "keys": keys, "targets": targets, "metrics": metric_names, "rows": rows,
            "udr": udr}


def correlations(data: dict[str, Any], *, seed: int = 0, reps: int = 2000) -> dict[str, Any]:
    """Spearman ρ (bootstrap CI) between each metric (and UDR) and the transfer score, and the best.

    "Best" is the largest ρ: DARLA's claim is that *more* disentangled models transfer *better*, so
    a metric that anti-correlates is not a predictor to select models by. UDR needs no labels.
    """
    y_key = TRANSFER_KEY + "_mean"
    out: dict[str, Any] = {}
    for name in [*data["metrics"], "udr"]:
        pts = []
        for r in data["rows"]:
            x = r["udr"] if name == "udr" else r["metrics"].get(name)
            if r["frozen"] and x is not None and r[y_key] is not None:
                pts.append((x, r[y_key]))
        if name == "udr" and not pts:
            continue
        xs, ys = (np.array([p[i] for p in pts], dtype=np.float64) for i in (0, 1))
        out[name] = {**spearman_bootstrap(xs, ys, reps=reps, seed=seed), "x": xs.tolist(), "y": ys.tolist()}
    ranked = [(v["rho"], k) for k, v in out.items() if v["rho"] is not None]
    best = max(ranked)[1] if ranked else None
    return {"per_metric": out, "best": best, "y": y_key}


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
        row += [r["transfer_ratio"].get(t) for t in data["targets"]] + [r[TRANSFER_KEY + "_mean"]]
        out.append(["" if v is None else v for v in row])
    return header, out


def _png_b64(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _scatter(name: str, corr: dict[str, Any], data: dict[str, Any]) -> str:
    """One metric: x = its score, y = transfer score, one colour per vision model."""
    pts = [r for r in data["rows"] if r["frozen"] and r[TRANSFER_KEY + "_mean"] is not None
           and (r["udr"] if name == "udr" else r["metrics"].get(name)) is not None]
    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    models = sorted({str(r["model"]) for r in pts})
    cmap = plt.get_cmap("tab10")
    for i, model in enumerate(models):
        mine = [r for r in pts if str(r["model"]) == model]
        xs = [r["udr"] if name == "udr" else r["metrics"][name] for r in mine]
        ax.scatter(xs, [r[TRANSFER_KEY + "_mean"] for r in mine], color=cmap(i % 10), label=model, s=28)
    rho = corr["rho"]
    ci = corr["ci"]
    title = f"{name}: ρ = {rho:.2f}" if rho is not None else f"{name}: ρ n/a"
    if ci:
        title += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    ax.set_title(title + f", n = {corr['n']}", fontsize=9, usetex=False)
    ax.set_xlabel("UDR (no labels)" if name == "udr" else name, usetex=False)
    ax.set_ylabel("transfer ratio (mean over targets)")
    for t in (ax.title, ax.xaxis.label):
        t.set_parse_math(False)  # a '$' in a name is text, not mathtext
    if models:
        leg = ax.legend(fontsize=7)
        for t in leg.get_texts():
            t.set_parse_math(False)
    ax.grid(alpha=0.3)
    return _png_b64(fig)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.85em;text-align:left}
th{background:#f4f4f4} .note{color:#666;font-size:.85em} .figs img{margin:.3em}
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
            f"{by_seeds} row(s). Cached in udr.json."
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
    if not parts:
        parts.append("UDR: no run has a seed partner with the same hyperparameters, nor vision.select: udr; add seeds: to the sweep.")
    return " ".join(parts)


def render_sweep_html(data: dict[str, Any], corr: dict[str, Any], grp: list[dict[str, Any]]) -> str:
    per = corr["per_metric"]
    best = corr["best"]
    if best is None:
        verdict = "No metric has a defined correlation yet (it needs ≥ 3 finished runs with a scored, frozen encoder and a positive source return)."
    else:
        b = per[best]
        ci = b["ci"]
        sure = ci is not None and ci[0] > 0
        verdict = (
            f"<b>{esc(best)}</b>{' (UDR, no labels)' if best == 'udr' else ''} predicts transfer best: "
            f"Spearman ρ = {b['rho']:.2f}" + (f", 95% bootstrap CI [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
            + f" over {b['n']} points. "
            + ("Its CI excludes 0." if sure else "Its CI includes 0: with this many runs it is not distinguishable from no correlation.")
        )
    corr_rows = [
        (name, c["n"], c["rho"], "" if not c["ci"] else f"[{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]", "" if c["p"] is None else f"{c['p']:.2g}")
        for name, c in sorted(per.items(), key=lambda kv: -(kv[1]["rho"] if kv[1]["rho"] is not None else -9))
    ]
    figs = "".join(
        f'<img alt="{esc(name)} vs transfer" src="data:image/png;base64,{_scatter(name, c, data)}">' for name, c in per.items()
    )
    g_header = ["vision model", "β", "runs", *[f"{m}" for m in data["metrics"]], "UDR",
                "source return IQM [CI]", *[f"{t} return IQM [CI]" for t in data["targets"]], "transfer ratio IQM [CI]"]
    g_rows = [
        [g["model"], g["beta"], g["n_runs"], *[g["metrics"].get(m) for m in data["metrics"]], g["udr"],
         _ci_text(g["source"]), *[_ci_text(g[t]) for t in data["targets"]], _ci_text(g[TRANSFER_KEY])]
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
        "<h2>Which metric predicts transfer?</h2>", f"<p>{verdict}</p>",
        _table(["metric", "points", "Spearman ρ", "95% bootstrap CI", "p"], corr_rows),
        "<p class='note'>Transfer score: the mean over target domains of target ÷ source mean return (per run and method). "
        "Points: (run, method) pairs whose policy saw a frozen encoder scored by the metric. "
        "CI: percentile bootstrap over points (seeded). Best = largest ρ: DARLA predicts more disentangled → better transfer.</p>",
        f"<p class='note udr'>{esc(udr_note(data))}</p>",
        f"<div class='figs'>{figs}</div>",
        "<h2>Per vision model and β</h2>", _table(g_header, g_rows),
        "<p class='note'>Metric and UDR columns: mean over runs. Returns and ratio: IQM over runs of each run's mean "
        "(stratified bootstrap CI, rliable).</p>",
        "<h2>Every run</h2>", _table(header, rows),
        "<p class='note'>Also in sweep_results.csv (same columns) and sweep_results.json.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_sweep_report(sweep_dir: Path, *, seed: int = 0, reps: int = 2000, udr_images: int = NUM_IMAGES) -> list[Path]:
    """Write ``sweep_results.csv``, ``sweep_results.json`` and ``sweep_report.html`` into ``sweep_dir``
    (and ``udr.json``, the cross-run UDR cache, when some models have seed partners)."""
    sweep_dir = Path(sweep_dir)
    data = collect_sweep(sweep_dir, udr_images=udr_images)
    corr = correlations(data, seed=seed, reps=reps)
    grp = groups(data, seed=seed)
    header, rows = csv_rows(data)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    paths = [sweep_dir / "sweep_results.csv", sweep_dir / "sweep_results.json", sweep_dir / "sweep_report.html"]
    write_text_atomic(paths[0], buf.getvalue())
    write_json_atomic(paths[1], {**data, "groups": grp, "correlations": corr})
    write_text_atomic(paths[2], render_sweep_html(data, corr, grp))
    return paths


def summary_lines(sweep_dir: Path) -> list[tuple[str, ...]]:
    """(metric, n, ρ, CI) rows for the console, from ``sweep_results.json``."""
    res = json.loads((Path(sweep_dir) / "sweep_results.json").read_text(encoding="utf-8"))
    out = []
    for name, c in res["correlations"]["per_metric"].items():
        ci = "" if not c["ci"] else f"[{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]"
        out.append((name + (" *" if name == res["correlations"]["best"] else ""), str(c["n"]), _fmt(c["rho"], 2) or "n/a", ci))
    return out
