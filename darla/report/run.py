"""The transfer report: ``results.json`` (numbers) and a self-contained ``report.html`` (pictures).

Every picture is embedded as a base64 PNG, so the HTML file can be mailed or archived alone.
Every string that comes from a config, a name or a file is escaped (:func:`darla.report.html.esc`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from darla.config import Config, dump_config
from darla.report import figures
from darla.report.html import b64, base_css, esc, img, png_b64, rgb_png_b64
from darla.report.icf import icf_section
from darla.report.media import VIDEO_BUDGET_BYTES, VIDEO_MAX_BYTES, compose, encode_gif
from darla.report.scan import scan_results, scan_section
from darla.runs import RunDir
from vision.io import write_json_atomic, write_text_atomic


# ---------------------------------------------------------------------------------------------
def collect_results(cfg: Config, run: RunDir) -> dict[str, Any]:
    """Everything numeric the report shows; deterministic for a seed (no timings, no paths)."""
    vision = _vision_numbers(run.vision_dir())
    encoders = {}
    for method in cfg.methods:
        folder = run.vision_dir(method)
        if (folder / "summary.json").exists():
            encoders[method] = _vision_numbers(folder)
    transfer = json.loads(run.path("transfer", "summary.json").read_text())
    selected = {}
    for method in cfg.methods:
        for seed in cfg.agent.seeds:
            meta = run.agent_dir(method, cfg.agent.algo, seed) / "meta.json"
            if meta.exists():
                selected.setdefault(method, {})[str(seed)] = json.loads(meta.read_text()).get("selected")
    return {
        "name": cfg.name,
        "env": {"name": cfg.env.name, "size": cfg.env.size, "domains": cfg.to_dict()["env"]["domains"]},
        "vision": vision,
        "encoders": encoders,
        "agent": {
            "algo": cfg.agent.algo, "seeds": list(cfg.agent.seeds), "total_timesteps": cfg.agent.total_timesteps,
            "timesteps": {m: cfg.timesteps_of(m) for m in cfg.methods},
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
    if s.get("n_seeds", 2) < 2:
        return f"{s[key]:.2f} (1 seed: no CI)"
    lo, hi = s[f"{key}_ci"]
    return f"{s[key]:.2f} [{lo:.2f}, {hi:.2f}]"


#: What a report may weigh: its figures (well under 2 MiB for a few methods) and its videos
#: (at most media.VIDEO_BUDGET_BYTES together), base64-encoded; tests/darla/test_report.py checks it.
REPORT_MAX_BYTES = 8 * 2**20

#: The transfer ratio of a method whose source score is at chance (see agents.stats.source_at_chance).
AT_CHANCE = "n/a (source at chance)"


def at_chance(results: dict[str, Any]) -> list[str]:
    """Methods whose source score is indistinguishable from (or below) a random policy's."""
    t = results["transfer"]
    return [m for m in t.get("method_order", list(t["methods"])) if t["methods"][m].get("source_at_chance", {}).get("at_chance")]


def summary_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per (method, domain): episode-level spread, seed-level spread, IQM [CI],
    normalised IQM [CI], transfer ratio, P(> baseline); single-seed statistics say so."""
    t = results["transfer"]
    poi = t.get("probability_of_improvement", {})
    chance = set(at_chance(results))
    rows = []
    for method in t.get("method_order", list(t["methods"])):
        res = t["methods"][method]
        for dname in t["domains"]:
            s = res["domains"][dname]
            norm = res["normalised"].get(dname)
            ratio = res["transfer_ratio"].get(dname)
            p = poi.get(dname, {}).get(method)
            one_seed = s.get("n_seeds", len(s.get("per_seed", []))) < 2
            if dname == "source":
                ratio_text = "—"
            elif method in chance:
                ratio_text = AT_CHANCE
            else:
                ratio_text = "n/a" if ratio is None else f"{ratio:.2f}"
            rows.append((
                method, dname,
                f"{s['mean']:.2f} ± {s['episode_std']:.2f} (n={s['n_episodes']})",
                f"{s['mean']:.2f} (1 seed: no spread)" if one_seed else f"{s['mean']:.2f} ± {s['std']:.2f} (n={s['n_seeds']})",
                _ci(s),
                "n/a" if norm is None else _ci(norm),
                ratio_text,
                "—" if p is None else f"{p['p']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]",
            ))
    return rows


def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


SUMMARY_HEADER = (
    "method", "domain", "return: episodes mean ± s.d.", "return: seeds mean ± s.d.", "IQM [95% CI]",
    "normalised IQM [95% CI]", "transfer ratio", "P(> baseline) [95% CI]",
)


def _domain_frames(path: Path) -> tuple[list[tuple[str, list[tuple[str, str]]]], dict[str, str] | None]:
    """([(domain, [(frame PNG, caption)] × 4)], the env's render key) from the transfer stage's
    ``reset_frames.npz`` (:func:`darla.stages.transfer.write_reset_frames`).

    Captions name each frame's scene factor values; the key says what each drawn thing is, where
    the env has one.
    """
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        frames = {name: z[f"frames/{name}"] for name in meta["domains"]}
    out = []
    for name in meta["domains"]:
        tiles = []
        for obs, scene in zip(frames[name], meta["scenes"][name]):
            caption = ""
            if scene is not None:
                caption = "<br>".join(f"{esc(n.replace('_', ' '))}: <b>{esc(v)}</b>" for n, v in scene.items())
            if obs.shape[0] < 96:
                import cv2

                f = -(-96 // obs.shape[0])
                obs = cv2.resize(obs, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST)
            tiles.append((rgb_png_b64(obs), caption))
        out.append((name, tiles))
    return out, meta["render_key"]


def _frames_section(run: RunDir) -> str:
    path = run.reset_frames()
    if not path.exists():
        return (
            "<p class='note'>No reset frames to show: this run directory has no transfer/reset_frames.npz. "
            "Re-running the transfer stage writes it.</p>"
        )
    domains, key = _domain_frames(path)
    parts = []
    for name, tiles in domains:
        figs = "".join(
            f"<figure>{img(b, f'reset frame from domain {name}')}<figcaption>{cap}</figcaption></figure>" for b, cap in tiles
        )
        parts.append(f"<h3>{esc(name)}</h3><div class='frames'>{figs}</div>")
    legend = ""
    if key:
        legend = "<p><b>Key:</b> " + "; ".join(f"{esc(k)}: {esc(v)}" for k, v in key.items()) + ".</p>"
    return legend + "".join(parts)


def _videos_section(cfg: Config, run: RunDir) -> str:
    """One GIF per method (stage 3's recorded episodes), every GIF within the report's budget."""
    methods = [m for m in cfg.methods if run.path("transfer", "videos", f"{m}.npz").exists()]
    if not methods:
        return "<p class='note'>No recorded episodes in transfer/videos/.</p>"
    budget = min(VIDEO_MAX_BYTES, VIDEO_BUDGET_BYTES // len(methods))
    parts = [
        f"<p class='note'>For each method, evaluation episode 0 of its first seed (seed {cfg.agent.seeds[0]}) in the source "
        f"domain and in each target, side by side: the very episodes of the table, actions "
        f"{'deterministic' if cfg.transfer.deterministic else 'sampled'} as in the evaluation. Each GIF is at most "
        f"{budget / 2**20:.2f} MiB (all of them at most {VIDEO_BUDGET_BYTES / 2**20:.0f} MiB): a longer one shows every "
        f"k-th frame, as stated under it, so the whole report stays under {REPORT_MAX_BYTES / 2**20:.0f} MiB. "
        "The recorded frames: transfer/videos/&lt;method&gt;.npz.</p>"
    ]
    for method in methods:
        with np.load(run.path("transfer", "videos", f"{method}.npz")) as z:
            panels = [(f"{d}\nepisode return {float(z[f'return/{d}']):.2f}", z[f"frames/{d}"]) for d in z["domains"]]
        gif, stride = encode_gif(compose(panels), budget)
        note = "every frame" if stride == 1 else f"every {stride}th frame (size bound)"
        parts.append(
            f"<figure><img alt='{esc(method)}: one episode per domain' src='data:image/gif;base64,"
            f"{b64(gif)}'><figcaption><b>{esc(method)}</b>: {note}, "
            f"{len(gif) / 1024:.0f} KiB</figcaption></figure>"
        )
    return "".join(parts)


def _stage_time(name: str, entry: dict[str, Any]) -> str:
    """A stage's wall time; after a stop and resume, every attempt's, or the last one's and why."""
    n = entry.get("attempts", 1)
    if n <= 1:
        return f"{name} {entry['wall_time_s']:.0f} s"
    if "wall_time_all_attempts_s" in entry:
        return f"{name} {entry['wall_time_all_attempts_s']:.0f} s over {n} attempts"
    k = entry.get("attempts_without_time", 0)
    return f"{name} {entry['wall_time_s']:.0f} s in the last of {n} attempts ({k} ended without a recorded time)"


def _provenance(cfg: Config, run: RunDir) -> str:
    """Who ran what, where, with which versions, and how long each stage took (manifest.json)."""
    from datetime import datetime

    import darla

    m = run.manifest()
    prov, vers = m.get("provenance", {}), m.get("versions", {})
    git = prov.get("git")
    git_text = "not a git checkout" if not git else (
        f"{git['commit'][:12]}" + (" (uncommitted changes)" if git.get("dirty") else " (clean)" if git.get("dirty") is False else "")
    )
    device = prov.get("device", "?")
    hw = prov.get("gpu") or ""
    cpu = f"{prov.get('cpu', '?')} × {prov.get('cpu_count', '?')} threads" + (
        f", torch on {prov['torch_threads']}" if "torch_threads" in prov else ""
    )
    stages = m.get("stages", {})
    times = ", ".join(
        _stage_time(name, stages[name]) for name in ("vision", "agent", "transfer", "scan")
        if name in stages and "wall_time_s" in stages[name]
    )
    rows = [
        ("report written", datetime.now().astimezone().isoformat(timespec="seconds")),
        ("run started", prov.get("started", "?") + (f" on {prov['host']}" if prov.get("host") else "")),
        ("command", prov.get("command", "?")),
        ("darla", f"{vers.get('darla', darla.__version__)}, git {git_text}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in vers.items() if k != "darla")),
        ("device", f"{device}" + (f" ({hw})" if hw else "") + f"; CPU {cpu}"),
        ("time per stage", times or "?"),
    ]
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class='prov'>{body}</table>"


def _banner(results: dict[str, Any]) -> str:
    names = at_chance(results)
    if not names:
        return ""
    t = results["transfer"]
    items = []
    for m in names:
        c = t["methods"][m]["source_at_chance"]
        ref = t["references"].get("source", {})
        lo, hi = c["ci"]
        if ref.get("oracle") is not None and ref["oracle"] > ref["random"]:
            scale = ref["oracle"] - ref["random"]
            lo, hi, unit = (lo - ref["random"]) / scale, (hi - ref["random"]) / scale, "normalised"
        else:
            unit = f"return (random policy: {c['random']:.2f})"
        over = "over seeds" if c["over"] == "seeds" else "over the episodes of its one seed"
        items.append(f"<li><b>{esc(m)}</b>: source {unit} 95% CI [{lo:.2f}, {hi:.2f}] ({over})</li>")
    return (
        "<div class='banner'><b>At chance in the source domain.</b> These policies do no better than a random policy "
        f"where they were trained, so their transfer ratios are shown as “{AT_CHANCE}”: a ratio of two chance-level "
        f"returns measures nothing. Train longer or check stage 1 (What each encoder carries).<ul>{''.join(items)}</ul></div>"
    )


def _config_folded(cfg: Config) -> str:
    """The resolved config in a <details>, without the sections this run does not use."""
    import yaml

    data = yaml.safe_load(dump_config(cfg))
    dropped = []
    if not cfg.scan.enabled:
        dropped.append("scan")
    if not cfg.metrics.enabled and not cfg.metrics.probe:
        dropped.append("metrics")
    if not cfg.env.external.gym_id:
        data["env"].pop("external", None)
        dropped.append("env.external")
    uses_dae = any(n == "beta_vae_dae" for n in (cfg.vision.model, *(m.encoder for m in cfg.methods.values())))
    if not uses_dae:
        data["vision"].pop("dae", None)
        dropped.append("vision.dae")
    if cfg.vision.select != "udr":
        data["vision"].pop("seeds", None)
        dropped.append("vision.seeds")
    for key in ("scan", "metrics"):
        if key in dropped:
            data.pop(key, None)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return (
        "<details><summary>The resolved config (click to open)</summary>"
        f"<pre>{esc(text)}</pre><p class='note'>Left out, unused by this run: {esc(', '.join(dropped) or 'nothing')}. "
        "The whole config: config.yaml in the run directory.</p></details>"
    )


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


CSS = base_css(1000, ".9") + """th{background:#f4f4f4} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
img{image-rendering:pixelated;max-width:100%} .note{color:#666;font-size:.85em}
.banner{background:#fff3cd;border:1px solid #e0b84c;padding:.6em 1em;margin:1em 0}
.frames{display:flex;flex-wrap:wrap;gap:.8em} figure{margin:.3em 0} figcaption{font-size:.8em;color:#444}
table.prov th{text-align:right;font-weight:normal;color:#555;background:none} table.prov td{font-size:.85em}
"""


def _budgets(cfg: Config) -> str:
    """"N steps", or each method's budget where they differ (methods.NAME.total_timesteps)."""
    steps = {m: cfg.timesteps_of(m) for m in cfg.methods}
    if len(set(steps.values())) <= 1:
        return f"{next(iter(steps.values()), cfg.agent.total_timesteps)} steps"
    return "steps " + ", ".join(f"{esc(m)} {n}" for m, n in steps.items())


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
    kl, order = summary["kl_per_dim"], summary["kl_order"]
    parts = [
        f"<h3>{esc(title)}: reconstructions</h3>",
        img(png_b64(figures.fig_reconstructions(folder / "recon.png")), f"{title} reconstructions"),
        f"<h3>{esc(title)}: latent traversals</h3>",
        img(png_b64(figures.fig_traversals(folder / "traversals.png", kl, order)), f"{title} latent traversals"),
        img(png_b64(figures.fig_kl(kl, order)), f"{title} per-latent KL"),
    ]
    if summary.get("history"):
        likelihood = summary.get("hparams", {}).get("likelihood")
        parts += [img(png_b64(figures.fig_vision_curves(summary["history"], likelihood)), f"{title} training curves")]
    if numbers.get("metrics"):
        parts += [f"<h3>{esc(title)}: disentanglement metrics on the env's ground-truth factors</h3>", _metrics_table(numbers["metrics"])]
    return parts


def render_html(cfg: Config, run: RunDir, results: dict[str, Any]) -> str:
    rows = summary_rows(results)
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in SUMMARY_HEADER) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
    t = results["transfer"]
    refs = t.get("references", {})
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    ref_rows = "".join(f"<tr><td>{esc(d)}</td><td>{fmt(r['random'])}</td><td>{fmt(r['oracle'])}</td></tr>" for d, r in refs.items())
    baseline = t.get("probability_of_improvement", {}).get("baseline")
    one_seed = len(cfg.agent.seeds) < 2
    episodes = figures.read_episodes(run.path("transfer", "episodes.csv"))
    curves = figures.read_curves(run.agent_dir, list(cfg.methods), list(cfg.agent.seeds), cfg.agent.algo)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>darla report — {esc(cfg.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>DARLA transfer report: {esc(cfg.name)}</h1>",
        _provenance(cfg, run),
        f"<p>Env <b>{esc(cfg.env.name)}</b> ({cfg.env.size}×{cfg.env.size}); stage-1 vision model <b>{esc(cfg.vision.model)}</b> "
        f"with {cfg.vision.latent_dim} latents; policy <b>{esc(cfg.agent.algo.upper())}</b>, "
        f"{_budgets(cfg)} × {len(cfg.agent.seeds)} seed(s) per method; {cfg.transfer.n_episodes} evaluation "
        f"episodes per domain and seed; policy selection: <b>{esc(cfg.agent.select)}</b> (source evaluations only).</p>",
        _banner(results),
        "<h2>Methods</h2>", _method_rows(cfg),
        "<h2>Zero-shot transfer</h2>", table,
        "<p class='note'>Seeds are the unit of the statistics: each seed's score is its mean episode return. "
        "“episodes”: mean ± standard deviation over every evaluation episode (n of them, seeds pooled): how much single "
        "episodes vary. “seeds”: over the seeds' scores. "
        + ("<b>This run has one seed</b>: there is no seed-level spread or CI, and the numbers say how one training run did, "
           "not how the method does. " if one_seed else "")
        + "IQM and mean CIs: stratified bootstrap over seeds (rliable). "
        "Normalised score = (return − random policy) ÷ (oracle − random policy) on the same episodes. "
        "Transfer ratio = target mean return ÷ source mean return (n/a when the source return is not positive, "
        f"“{AT_CHANCE}” when the source score's 95% CI reaches the random policy's). "
        + (f"P(&gt; baseline) = probability that a seed of the method beats a seed of <b>{esc(baseline)}</b> (rliable's probability of improvement)." if baseline else "")
        + "</p>",
        img(png_b64(figures.fig_transfer(t)), "transfer bar chart"),
        img(png_b64(figures.fig_episodes(t, episodes)), "evaluation episodes per method and domain"),
        "<h3>Score references (mean return on the same evaluation episodes)</h3>",
        "<table><tr><th>domain</th><th>random policy</th><th>oracle (true state)</th></tr>" + ref_rows + "</table>",
        "<h2>Watch the agent</h2>", _videos_section(cfg, run),
        "<h2>What changed between domains</h2><p class='note'>Four reset frames per domain, each captioned with its scene's "
        "factor values. Targets are held-out combinations: no target frame was used to train a vision model or a policy, "
        "or to select one.</p>", _frames_section(run),
        "<h2>Learn to act</h2>",
        img(png_b64(figures.fig_agent_curves(curves, refs.get("source", {}), cfg.agent.algo, max(map(cfg.timesteps_of, cfg.methods)))),
             "agent learning curves"),
        "<p class='note'>Training episodes: returns of the policy while it learns (its exploration included), smoothed as "
        "the title says. Random-policy and oracle lines: the source references of the table above."
        + ("" if cfg.agent.eval_every else " No source-evaluation curve: agent.eval_every is 0 in this run.") + "</p>",
        "<h2>Learn to see</h2>",
        _carried_table(results, f"{cfg.vision.model} (vision)"),
        *_vision_block(cfg.vision.model, run.vision_dir(), results["vision"]),
    ]
    for method, numbers in results.get("encoders", {}).items():
        parts += _vision_block(f"{method} ({cfg.methods[method].encoder})", run.vision_dir(method), numbers)
    parts.append(icf_section(cfg, run, results))  # "" when no ICF encoder was trained
    parts.append(scan_section(cfg, run))  # "" when no scan stage ran
    parts += [
        "<h2>Config</h2>", _config_folded(cfg),
        "<p class='note'>Per-episode returns (every method, seed, domain and episode seed): transfer/episodes.csv; "
        "numbers: results.json; TensorBoard: vision/tb (losses, reconstructions and traversals at each checkpoint), "
        "agent/&lt;method&gt;/&lt;algo&gt;_seed&lt;k&gt;/tb, transfer/tb (returns per domain).</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_report(cfg: Config, run: RunDir) -> list[Path]:
    results = collect_results(cfg, run)
    write_json_atomic(run.path("results.json"), results)
    write_text_atomic(run.path("report.html"), render_html(cfg, run, results))
    return [run.path("results.json"), run.path("report.html")]
