"""The transfer report: ``results.json`` (numbers) and a self-contained ``report.html`` (pictures).

Every picture is embedded as a base64 PNG, so the HTML file can be mailed or archived alone.
Every string that comes from a config, a name or a file is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from darla.config import Config, dump_config  # noqa: E402
from darla.report.icf import icf_section  # noqa: E402
from darla.report.scan import scan_results, scan_section  # noqa: E402
from darla.runs import RunDir, write_json_atomic, write_text_atomic  # noqa: E402


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _png_b64(path_or_fig: Any) -> str:
    if isinstance(path_or_fig, (str, Path)):
        data = Path(path_or_fig).read_bytes()
    else:
        buf = io.BytesIO()
        path_or_fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(path_or_fig)
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def _img(b64: str, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{b64}"{w}>'


def _rgb_png_b64(img: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


# ---------------------------------------------------------------------------------------------
def collect_results(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Everything numeric the report shows; deterministic for a seed (no timings, no paths)."""
    vision = _vision_numbers(run.path("vision"))
    encoders = {}
    for method in cfg.methods:
        folder = run.path("vision", "encoders", method)
        if (folder / "summary.json").exists():
            encoders[method] = _vision_numbers(folder)
    transfer = json.loads(run.path("transfer", "summary.json").read_text())
    selected = {}
    for method in cfg.methods:
        for seed in cfg.agent.seeds:
            meta = run.path("agent", method, f"{cfg.agent.algo}_seed{seed}", "meta.json")
            if meta.exists():
                selected.setdefault(method, {})[str(seed)] = json.loads(meta.read_text()).get("selected")
    return {
        "name": cfg.name,
        "env": {"name": cfg.env.name, "size": cfg.env.size, "domains": cfg.to_dict()["env"]["domains"]},
        "vision": vision,
        "encoders": encoders,
        "agent": {
            "algo": cfg.agent.algo, "seeds": list(cfg.agent.seeds), "total_timesteps": cfg.agent.total_timesteps,
            "methods": cfg.to_dict()["methods"], "selected": selected,
        },
        "transfer": transfer,
        **({"scan": scan} if (scan := scan_results(run)) is not None else {}),
    }


def _vision_numbers(folder: Path) -> dict[str, Any]:
    vision = json.loads((folder / "summary.json").read_text())
    history = vision.pop("history", {})
    vision["final"] = {k: v[-1] for k, v in history.items() if v and k != "step"}
    if (folder / "metrics.json").exists():
        scored = json.loads((folder / "metrics.json").read_text())
        vision["metrics"] = scored["metrics"]
        if "factors" in scored:  # runs scored before the factors were recorded have none
            vision["factors"] = scored["factors"]
        if "probe" in scored:
            vision["probe"] = scored["probe"]
    return vision


def _ci(s: dict[str, Any], key: str = "iqm") -> str:
    lo, hi = s[f"{key}_ci"]
    return f"{s[key]:.2f} [{lo:.2f}, {hi:.2f}]"


def summary_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """(method, domain, mean ± std, IQM [CI], normalised IQM [CI], transfer ratio, P(> baseline)) rows."""
    t = results["transfer"]
    poi = t.get("probability_of_improvement", {})
    rows = []
    for method in t.get("method_order", list(t["methods"])):
        res = t["methods"][method]
        for dname in t["domains"]:
            s = res["domains"][dname]
            norm = res["normalised"].get(dname)
            ratio = res["transfer_ratio"].get(dname)
            p = poi.get(dname, {}).get(method)
            rows.append((
                method, dname,
                f"{s['mean']:.2f} ± {s['std']:.2f}",
                _ci(s),
                "n/a" if norm is None else _ci(norm),
                "—" if dname == "source" else ("n/a" if ratio is None else f"{ratio:.2f}"),
                "—" if p is None else f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]",
            ))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


SUMMARY_HEADER = (
    "method", "domain", "return mean ± std (seeds)", "IQM [95% CI]", "normalised IQM [95% CI]", "transfer ratio",
    "P(> baseline) [95% CI]",
)


# ---------------------------------------------------------------------------------------------
def _fig_kl(kl: list[float], order: list[int]):
    fig, ax = plt.subplots(figsize=(6, 2.6))
    vals = [kl[i] for i in order]
    ax.bar(range(len(vals)), vals, color="#4c72b0")
    ax.set_xticks(range(len(vals)), [f"z{i}" for i in order], rotation=90, fontsize=7)
    ax.set_ylabel("KL (nats)")
    ax.set_title("Per-latent KL to the prior (sorted)")
    return fig


def _fig_vision_curves(history: dict[str, list[float]]):
    keys = [k for k in ("loss", "recon", "kl", "tc", "capacity") if history.get(k)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.2 * max(len(keys), 1), 2.6), squeeze=False)
    steps = history.get("step") or list(range(len(history.get(keys[0], [])) if keys else 0))
    for ax, k in zip(axes[0], keys):
        ax.plot(steps[: len(history[k])], history[k], lw=1, marker="o" if len(history[k]) < 10 else None, ms=3)
        ax.set_title(f"vision/{k}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    fig.tight_layout()
    return fig


def _monitor_curve(folder: Path) -> tuple[np.ndarray, np.ndarray]:
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


def _fig_agent_curves(run: RunDir, cfg: Config):
    """One panel per method: training-episode returns per seed, and source/target evaluations."""
    methods = list(cfg.methods)
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods) + 0.6, 2.8), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        for seed in cfg.agent.seeds:
            folder = run.path("agent", method, f"{cfg.agent.algo}_seed{seed}")
            steps, rets = _monitor_curve(folder / "monitor")
            if len(rets):
                k = max(1, len(rets) // 20)
                smooth = np.convolve(rets, np.ones(k) / k, mode="valid")
                (line,) = ax.plot(steps[k - 1 :], smooth, lw=1, label=f"seed {seed}")
                evals = folder / "evaluations.jsonl"
                if evals.exists():
                    ev = [json.loads(x) for x in evals.read_text().splitlines() if x.strip()]
                    ax.plot([e["timesteps"] for e in ev], [e["source"] for e in ev], "o", ms=3, color=line.get_color())
                    for dname in [k for k in (ev[0] if ev else {}) if k not in ("timesteps", "source")]:
                        ax.plot([e["timesteps"] for e in ev], [e[dname] for e in ev], "x--", ms=3, lw=0.6, color=line.get_color())
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("env steps", fontsize=8)
    axes[0][0].set_ylabel("episode return (source)")
    if axes[0][0].lines:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{cfg.agent.algo.upper()} learning curves (lines: training episodes; o: source evaluations; x: targets, logged only)", fontsize=8)
    fig.tight_layout()
    return fig


def _fig_transfer(results: dict[str, Any]):
    """Grouped bars: methods on x, one bar per domain (normalised IQM where references exist)."""
    t = results["transfer"]
    methods, domains = t.get("method_order", list(t["methods"])), list(t["domains"])
    use_norm = all(t["methods"][m]["normalised"].get(d) for m in methods for d in domains)
    key = "normalised" if use_norm else "domains"
    width = 0.8 / len(domains)
    fig, ax = plt.subplots(figsize=(1.8 + 1.4 * len(methods) * max(1, len(domains) / 2), 3.2))
    palette = ["#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd", "#dd8452"]
    for j, dname in enumerate(domains):
        vals = [t["methods"][m][key][dname] for m in methods]
        y = [v["iqm"] for v in vals]
        err = [[v["iqm"] - v["iqm_ci"][0] for v in vals], [v["iqm_ci"][1] - v["iqm"] for v in vals]]
        x = np.arange(len(methods)) + (j - (len(domains) - 1) / 2) * width
        ax.bar(x, y, width, yerr=err, capsize=3, label=dname, color=palette[j % len(palette)])
    ax.set_xticks(range(len(methods)), methods, rotation=15, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    if use_norm:
        ax.axhline(1, color="k", lw=0.5, ls=":")
    ax.set_ylabel("normalised score (IQM)" if use_norm else "episode return (IQM)")
    ax.set_title("Source vs zero-shot targets per method (IQM, 95% stratified-bootstrap CI over seeds)", fontsize=9)
    ax.legend(fontsize=7, ncol=min(len(domains), 4))
    return fig


def _domain_frames(cfg: Config) -> list[tuple[str, str]]:
    from darla.pipeline import domains_of
    from envs.registry import make_env

    vision, source, targets = domains_of(cfg)
    out = []
    for name, dom in {"vision": vision, "source": source, **targets}.items():
        tiles = []
        for k in range(4):
            env = make_env(cfg.env.name, dom, size=cfg.env.size, max_steps=cfg.env.max_steps)
            obs, _ = env.reset(seed=cfg.transfer.seed_base + 7919 * k)
            env.close()
            tiles.append(obs)
        strip = np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in tiles], axis=1)
        if strip.shape[0] < 96:
            import cv2

            f = 96 // strip.shape[0] + 1
            strip = cv2.resize(strip, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
        out.append((name, _rgb_png_b64(strip)))
    return out


def _metrics_table(metrics: dict[str, Any]) -> str:
    """One row per metric: its main score, the other numbers it reports, and the settings it ran with."""
    from vision.metrics import SETTINGS

    def num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    rows = []
    for mname, vals in metrics.items():
        if not isinstance(vals, dict):
            continue
        setting_keys = set(SETTINGS.get(mname, {}).get("full", {})) | {"settings"}
        main = vals.get(mname)
        others = ", ".join(f"{esc(k)}={v:.3f}" for k, v in vals.items() if k != mname and k not in setting_keys and num(v))
        settings = ", ".join(f"{esc(k)}={esc(vals[k])}" for k in sorted(setting_keys) if k in vals)
        rows.append(
            f"<tr><td>{esc(mname)}</td><td><b>{'—' if not num(main) else f'{main:.3f}'}</b></td>"
            f"<td>{others}</td><td class='note'>{settings}</td></tr>"
        )
    head = "<tr><th>metric</th><th>score</th><th>also reported</th><th>settings</th></tr>"
    return "<table>" + head + "".join(rows) + "</table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.9em;text-align:left}
th{background:#f4f4f4} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
img{image-rendering:pixelated;max-width:100%} .note{color:#666;font-size:.85em}
"""


def _method_rows(cfg: Config) -> str:
    what = {
        "vision": lambda m: f"frozen {cfg.vision.model} (stage 1)",
        "pixels": lambda m: "conv encoder learnt by RL from scratch",
    }
    rows = []
    for name, m in cfg.methods.items():
        desc = what.get(m.encoder, lambda m: f"frozen {m.encoder} {m.params or ''} (stage 1, same frames)")(m)
        if m.finetune:
            desc = f"{cfg.vision.model if m.encoder == 'vision' else m.encoder} encoder inside the policy, fine-tuned by RL (DARLA_FT)"
        if m.augment != "none":
            desc += f" + {m.augment} augmentation of update batches (RAD)"
        rows.append(f"<tr><td>{esc(name)}</td><td>{esc(desc)}</td><td>{esc(m.observe)}</td></tr>")
    return "<table><tr><th>method</th><th>what the policy sees through</th><th>input</th></tr>" + "".join(rows) + "</table>"


def carried_rows(
    results: dict[str, Any], probe: bool = False
) -> tuple[list[str], list[float], list[tuple[str, list[float | None]]]]:
    """(factor names, chance per factor, [(encoder, test accuracy per factor)]) of every scored
    encoder: which ground-truth factors a policy on its latents can read at all.

    The accuracies are DCI's classifier's, or with ``probe`` the MLP probe's
    (:mod:`vision.metrics.probe`); an encoder without them has no row.
    """
    from vision.metrics.dci import accuracy_by_factor

    blocks = [("vision", results["vision"]), *results.get("encoders", {}).items()]
    names: list[str] = []
    chance: list[float] = []
    rows = []
    for label, numbers in blocks:
        factors = numbers.get("factors")
        if probe:
            by_name = numbers.get("probe")
            by_factor = {j: by_name.get(n) for j, n in enumerate(factors["names"])} if by_name and factors else None
        else:
            dci = numbers.get("metrics", {}).get("dci", {})
            by_factor = accuracy_by_factor(dci) if dci.get("informativeness_test_per_factor") and factors else None
        if by_factor is None:
            continue
        if not names:
            names, chance = factors["names"], [1.0 / s for s in factors["sizes"]]
        rows.append((label, [by_factor.get(j) for j in range(len(names))]))
    return names, chance, rows


def _carried_table(results: dict[str, Any], vision_label: str) -> str:
    names, chance, rows = carried_rows(results)
    p_names, p_chance, p_rows = carried_rows(results, probe=True)
    if not rows and not p_rows:
        return ""
    names, chance = names or p_names, chance or p_chance
    dci, probed = dict(rows), dict(p_rows)
    cell = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    head = "<tr><th>encoder</th>" + "".join(f"<th>{esc(n)}</th>" for n in names) + "</tr>"
    body = "<tr><td class='note'>chance</td>" + "".join(f"<td class='note'>{c:.2f}</td>" for c in chance) + "</tr>"
    for label in dict.fromkeys([*dci, *probed]):  # encoders in order, once
        shown = vision_label if label == "vision" else label
        for suffix, acc in ((", DCI", dci.get(label)), (", MLP probe", probed.get(label))):
            if acc is not None:
                body += f"<tr><td>{esc(shown + suffix)}</td>" + "".join(f"<td>{cell(a)}</td>" for a in acc) + "</tr>"
    return (
        "<h3>What each encoder carries</h3><table>" + head + body + "</table>"
        "<p class='note'>Test accuracy from the latent means to each ground-truth factor (vision domain): "
        "of DCI's classifier (boosted trees on the metric's sample, settings below), and of a 256-unit MLP "
        "probe on its own sample (vision.metrics.probe), which reads a factor spread over several latents "
        "as a policy would. Near chance in both, a factor is invisible to a policy on these latents however "
        "well the RL half works.</p>"
    )


def _vision_block(title: str, folder: Path, numbers: dict[str, Any]) -> list[str]:
    summary = json.loads((folder / "summary.json").read_text())
    parts = [
        f"<h3>{esc(title)}: reconstructions (top: input, bottom: reconstruction)</h3>",
        _img(_png_b64(folder / "recon.png"), f"{title} reconstructions"),
        f"<h3>{esc(title)}: latent traversals (one row per latent, sorted by KL, ±2.5 around one frame's code)</h3>",
        _img(_png_b64(folder / "traversals.png"), f"{title} latent traversals"),
        _img(_png_b64(_fig_kl(summary["kl_per_dim"], summary["kl_order"])), f"{title} per-latent KL"),
    ]
    if summary.get("history"):
        parts += [_img(_png_b64(_fig_vision_curves(summary["history"])), f"{title} training curves")]
    if numbers.get("metrics"):
        parts += [f"<h3>{esc(title)}: disentanglement metrics on the env's ground-truth factors</h3>", _metrics_table(numbers["metrics"])]
    return parts


def render_html(cfg: Config, run: RunDir, results: dict[str, Any]) -> str:
    rows = summary_rows(results)
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADER) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    refs = results["transfer"].get("references", {})
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    ref_rows = "".join(f"<tr><td>{esc(d)}</td><td>{fmt(r['random'])}</td><td>{fmt(r['oracle'])}</td></tr>" for d, r in refs.items())
    frames = "".join(f"<h3>{esc(n)}</h3>{_img(b, f'frames from domain {n}')}" for n, b in _domain_frames(cfg))
    baseline = results["transfer"].get("probability_of_improvement", {}).get("baseline")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>darla report — {esc(cfg.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>DARLA transfer report: {esc(cfg.name)}</h1>",
        f"<p>Env <b>{esc(cfg.env.name)}</b> ({cfg.env.size}×{cfg.env.size}); stage-1 vision model <b>{esc(cfg.vision.model)}</b> "
        f"with {cfg.vision.latent_dim} latents; policy <b>{esc(cfg.agent.algo.upper())}</b>, "
        f"{cfg.agent.total_timesteps} steps × {len(cfg.agent.seeds)} seed(s) per method; {cfg.transfer.n_episodes} evaluation "
        f"episodes per domain and seed; policy selection: <b>{esc(cfg.agent.select)}</b> (source evaluations only).</p>",
        "<h2>Methods</h2>", _method_rows(cfg),
        "<h2>Zero-shot transfer</h2>", table,
        "<p class='note'>Seeds are the unit of the statistics: each seed's score is its mean episode return. "
        "IQM and mean CIs: stratified bootstrap over seeds (rliable; with one seed they collapse to the point estimate). "
        "Normalised score = (return − random policy) ÷ (oracle − random policy) on the same episodes. "
        "Transfer ratio = target mean return ÷ source mean return (n/a when the source return is not positive). "
        + (f"P(&gt; baseline) = probability that a seed of the method beats a seed of <b>{esc(baseline)}</b> (rliable's probability of improvement)." if baseline else "")
        + "</p>",
        _img(_png_b64(_fig_transfer(results)), "transfer bar chart"),
        "<h3>Score references (mean return on the same evaluation episodes)</h3>",
        "<table><tr><th>domain</th><th>random policy</th><th>oracle (true state)</th></tr>" + ref_rows + "</table>",
        "<h2>What changed between domains</h2><p class='note'>Four reset frames per domain. Targets are held-out combinations: "
        "no target frame was used to train a vision model or a policy, or to select one.</p>", frames,
        "<h2>Learn to act</h2>", _img(_png_b64(_fig_agent_curves(run, cfg)), "agent learning curves"),
        "<h2>Learn to see</h2>",
        _carried_table(results, f"{cfg.vision.model} (vision)"),
        *_vision_block(cfg.vision.model, run.path("vision"), results["vision"]),
    ]
    for method, numbers in results.get("encoders", {}).items():
        parts += _vision_block(f"{method} ({cfg.methods[method].encoder})", run.path("vision", "encoders", method), numbers)
    parts.append(icf_section(cfg, run, results))  # "" when no ICF encoder was trained
    parts.append(scan_section(cfg, run))  # "" when no scan stage ran
    parts += [
        "<h2>Config</h2>", f"<pre>{esc(dump_config(cfg))}</pre>",
        "<p class='note'>Per-episode returns (every method, seed, domain and episode seed): transfer/episodes.csv; "
        "numbers: results.json.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(cfg: Config, run: RunDir) -> list[Path]:
    results = collect_results(cfg, run)
    write_json_atomic(run.path("results.json"), results)
    write_text_atomic(run.path("report.html"), render_html(cfg, run, results))
    return [run.path("results.json"), run.path("report.html")]
