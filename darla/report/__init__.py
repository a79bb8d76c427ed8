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
    vision = json.loads(run.path("vision", "summary.json").read_text())
    history = vision.pop("history", {})
    vision["final"] = {k: v[-1] for k, v in history.items() if v and k != "step"}
    metrics_path = run.path("vision", "metrics.json")
    if metrics_path.exists():
        vision["metrics"] = json.loads(metrics_path.read_text())["metrics"]
    transfer = json.loads(run.path("transfer", "summary.json").read_text())
    return {
        "name": cfg.name,
        "env": {"name": cfg.env.name, "size": cfg.env.size, "domains": cfg.to_dict()["env"]["domains"]},
        "vision": vision,
        "agent": {"algo": cfg.agent.algo, "seeds": list(cfg.agent.seeds), "total_timesteps": cfg.agent.total_timesteps},
        "transfer": transfer,
    }


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(domain, mean ± std, IQM [CI], transfer ratio) rows for the console and the HTML table."""
    t = results["transfer"]
    rows = []
    for dname, s in t["domains"].items():
        ratio = t["transfer_ratio"].get(dname)
        rows.append((
            dname,
            f"{s['mean']:.2f} ± {s['std']:.2f}",
            f"{s['iqm']:.2f} [{s['iqm_ci'][0]:.2f}, {s['iqm_ci'][1]:.2f}]",
            "—" if dname == "source" else ("n/a" if ratio is None else f"{ratio:.2f}"),
        ))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


SUMMARY_HEADER = ("domain", "return mean ± std (seeds)", "IQM [95% CI]", "transfer ratio")


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
        ax.plot(steps[: len(history[k])], history[k], lw=1)
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
    fig, ax = plt.subplots(figsize=(5, 2.8))
    for seed in cfg.agent.seeds:
        steps, rets = _monitor_curve(run.path("agent", f"{cfg.agent.algo}_seed{seed}", "monitor"))
        if len(rets):
            k = max(1, len(rets) // 20)
            smooth = np.convolve(rets, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1 :], smooth, lw=1, label=f"seed {seed}")
    ax.set_xlabel("env steps (all envs)")
    ax.set_ylabel("episode return (source)")
    ax.set_title(f"{cfg.agent.algo.upper()} learning curve on frozen latents", fontsize=9)
    if ax.lines:
        ax.legend(fontsize=7)
    return fig


def _fig_transfer(results: dict[str, Any]):
    doms = results["transfer"]["domains"]
    names = list(doms)
    means = [doms[n]["mean"] for n in names]
    lo = [doms[n]["mean"] - doms[n]["mean_ci"][0] for n in names]
    hi = [doms[n]["mean_ci"][1] - doms[n]["mean"] for n in names]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(names), 3))
    colours = ["#55a868" if n == "source" else "#c44e52" for n in names]
    ax.bar(range(len(names)), means, yerr=[lo, hi], color=colours, capsize=4)
    ax.set_xticks(range(len(names)), names, rotation=15, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylabel("mean episode return")
    ax.set_title("Source vs zero-shot targets (95% bootstrap CI over seeds)", fontsize=9)
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


def render_html(cfg: Config, run: RunDir, results: dict[str, Any]) -> str:
    vision_summary = json.loads(run.path("vision", "summary.json").read_text())
    rows = summary_rows(results)
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADER) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    frames = "".join(f"<h3>{esc(n)}</h3>{_img(b, f'frames from domain {n}')}" for n, b in _domain_frames(cfg))
    metrics = results["vision"].get("metrics")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>darla report — {esc(cfg.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>DARLA transfer report: {esc(cfg.name)}</h1>",
        f"<p>Env <b>{esc(cfg.env.name)}</b> ({cfg.env.size}×{cfg.env.size}); vision model <b>{esc(cfg.vision.model)}</b> "
        f"with {cfg.vision.latent_dim} latents; policy <b>{esc(cfg.agent.algo.upper())}</b> on the frozen posterior means, "
        f"{cfg.agent.total_timesteps} steps × {len(cfg.agent.seeds)} seed(s); {cfg.transfer.n_episodes} evaluation episodes per domain and seed.</p>",
        "<h2>Zero-shot transfer</h2>", table,
        "<p class='note'>Transfer ratio = target mean return ÷ source mean return (n/a when the source return is not positive). "
        "CIs: stratified bootstrap over seeds (rliable); with one seed they collapse to the point estimate.</p>",
        _img(_png_b64(_fig_transfer(results)), "transfer bar chart"),
        "<h2>What changed between domains</h2><p class='note'>Four reset frames per domain. Targets are held-out combinations: "
        "no target frame was used to train the vision model or the policy.</p>", frames,
        "<h2>Learn to see</h2><h3>Reconstructions (top: input, bottom: reconstruction)</h3>",
        _img(_png_b64(run.path("vision", "recon.png")), "reconstructions"),
        "<h3>Latent traversals (one row per latent, sorted by KL, ±2.5 around one frame's code)</h3>",
        _img(_png_b64(run.path("vision", "traversals.png")), "latent traversals"),
        _img(_png_b64(_fig_kl(vision_summary["kl_per_dim"], vision_summary["kl_order"])), "per-latent KL"),
    ]
    if vision_summary.get("history"):
        parts += ["<h3>Training curves</h3>", _img(_png_b64(_fig_vision_curves(vision_summary["history"])), "vision curves")]
    if metrics:
        parts += ["<h3>Disentanglement metrics on the env's ground-truth factors</h3>", _metrics_table(metrics)]
    parts += [
        "<h2>Learn to act</h2>", _img(_png_b64(_fig_agent_curves(run, cfg)), "agent learning curves"),
        "<h2>Config</h2>", f"<pre>{esc(dump_config(cfg))}</pre>",
        "<p class='note'>Per-episode returns: transfer/episodes.csv; numbers: results.json.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(cfg: Config, run: RunDir) -> list[Path]:
    results = collect_results(cfg, run)
    write_json_atomic(run.path("results.json"), results)
    write_text_atomic(run.path("report.html"), render_html(cfg, run, results))
    return [run.path("results.json"), run.path("report.html")]
