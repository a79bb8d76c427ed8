"""The run report's parts: labelled figures, the chance banner, honest spread, bounded videos,
provenance, TensorBoard summaries, and the CLI's help and progress lines."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from darla.report import figures as F
from darla.report.run import AT_CHANCE, REPORT_MAX_BYTES, at_chance, summary_rows
from darla.stages.transfer import summarize_transfer

DOMAINS = ["source", "target_a"]
REFS = {"source": {"random": 0.0, "oracle": 10.0}, "target_a": {"random": 0.0, "oracle": 10.0}}


def rows_for(method: str, seeds: list[int], source_mean: float, target_mean: float, n: int = 20) -> list[dict]:
    """Episodes of one method whose returns spread ±3 around the given means."""
    rng = np.random.default_rng(len(method))
    out = []
    for s in seeds:
        for d, mean in zip(DOMAINS, (source_mean, target_mean)):
            for k, r in enumerate(mean + rng.uniform(-3, 3, n)):
                out.append({"method": method, "seed": s, "domain": d, "episode": k, "ret": float(r)})
    return out


def transfer(seeds: list[int]) -> dict:
    """'chance' scores like a random policy in the source; 'good' well above it."""
    rows = rows_for("chance", seeds, 0.0, 0.1) + rows_for("good", seeds, 7.0, 5.0)
    return summarize_transfer(rows, DOMAINS, ["chance", "good"], seeds, REFS, seed=0)


# --------------------------------------------------------------------------- chance and spread

@pytest.mark.parametrize("seeds", [[0], [0, 1, 2]])
def test_chance_banner_for_a_policy_at_chance_and_not_above(seeds):
    from darla.report.run import _banner

    t = transfer(seeds)
    results = {"transfer": t}
    assert at_chance(results) == ["chance"]
    over = "episodes" if len(seeds) == 1 else "seeds"
    assert t["methods"]["chance"]["source_at_chance"]["over"] == over
    assert t["methods"]["good"]["source_at_chance"]["at_chance"] is False
    ratios = {(r[0], r[1]): r[6] for r in summary_rows(results)}
    assert ratios[("chance", "target_a")] == AT_CHANCE
    assert re.fullmatch(r"0\.\d\d", ratios[("good", "target_a")])
    banner = _banner(results)
    assert "At chance in the source domain" in banner and "<b>chance</b>" in banner and "<b>good</b>" not in banner
    assert _banner({"transfer": summarize_transfer(rows_for("good", seeds, 7.0, 5.0), DOMAINS, ["good"], seeds, REFS)}) == ""


def test_source_at_chance_reads_the_ci_lower_end():
    from agents.stats import source_at_chance

    assert source_at_chance({0: [1.0, 1.2, 0.9, 1.1]}, 0.0)["at_chance"] is False
    assert source_at_chance({0: [-0.5, 0.6, 0.1, -0.2]}, 0.0)["at_chance"] is True
    assert source_at_chance({0: [-2.0, -1.9, -2.1]}, 0.0)["at_chance"] is True  # below random counts too


def test_normalised_entries_describe_the_episodes():
    t = transfer([0])
    norm = t["methods"]["good"]["normalised"]["source"]
    raw = t["methods"]["good"]["domains"]["source"]
    assert norm["n_episodes"] == raw["n_episodes"] == 20
    assert norm["episode_std"] == pytest.approx(raw["episode_std"] / 10.0)
    assert norm["episode_std"] > 0.05 and norm["per_seed"][0] == pytest.approx(raw["per_seed"][0] / 10.0)


def test_single_seed_statistics_say_so():
    one = summary_rows({"transfer": transfer([0])})
    assert all("1 seed: no spread" in r[3] and "1 seed: no CI" in r[4] and "(n=20)" in r[2] for r in one)
    many = summary_rows({"transfer": transfer([0, 1, 2])})
    assert not any("1 seed" in c for r in many for c in r)
    assert all("(n=60)" in r[2] and "(n=3)" in r[3] and "[" in r[4] for r in many)


# --------------------------------------------------------------------------- figures

def _png(tmp_path: Path, name: str, shape: tuple[int, int]) -> Path:
    import cv2

    p = tmp_path / name
    cv2.imwrite(str(p), np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8))
    return p


def all_figures(tmp_path: Path) -> dict:
    t = transfer([0, 1])
    episodes = rows_for("chance", [0, 1], 0.2, 0.1) + rows_for("good", [0, 1], 7.0, 5.0)
    rng = np.random.default_rng(0)
    curves = {m: {s: {"steps": np.cumsum(np.full(50, 100)), "returns": rng.normal(size=50),
                      "evals": [{"timesteps": 1000 * i, "source": float(i), "target_a": 0.5 * i} for i in range(1, 5)]}
                  for s in (0, 1)} for m in ("chance", "good")}
    history = {"step": [10, 20, 30], "loss": [3.0, 2.0, 1.0], "recon": [2.5, 1.5, 0.9], "kl": [0.5, 0.5, 0.1]}
    return {
        "transfer": F.fig_transfer(t),
        "episodes": F.fig_episodes(t, episodes),
        "learning curves": F.fig_agent_curves(curves, REFS["source"], "ppo", 5000),
        "vision curves": F.fig_vision_curves(history, "bernoulli"),
        "kl": F.fig_kl([0.1, 2.0, 0.5], [1, 2, 0]),
        "traversals": F.fig_traversals(_png(tmp_path, "t.png", (3 * 33 + 1, 10 * 33 + 1)), [0.1, 2.0, 0.5], [1, 2, 0]),
        "reconstructions": F.fig_reconstructions(_png(tmp_path, "r.png", (67, 8 * 33 + 1))),
    }


def test_every_figure_has_a_title_and_axis_labels(tmp_path):
    import matplotlib.pyplot as plt

    for name, fig in all_figures(tmp_path).items():
        for ax in fig.axes:
            assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), (name, ax.get_title())
            assert ax.get_title().strip() or fig._suptitle is not None, name
        plt.close(fig)


def test_figures_say_what_they_show(tmp_path):
    import matplotlib.pyplot as plt

    figs = all_figures(tmp_path)
    bars = figs["transfer"].axes[0]
    labels = bars.get_legend().get_texts()
    assert "oracle, true state (1)" in [t.get_text() for t in labels]
    assert bars.get_legend().get_bbox_to_anchor().x0 > bars.get_window_extent().x1 - 1  # the legend is off the data
    lo, hi = bars.get_ylim()
    assert -0.5 < lo < 0 and 1 < hi < 1.5  # fits the data and both references, not an empty range
    curves = figs["learning curves"]
    text = [t.get_text() for t in curves.legends[0].get_texts()]
    assert {"random policy", "oracle (true state)", "min–max across seeds"} <= set(text)
    assert any(t.startswith("source evaluation") for t in text)
    assert "moving average over 2 training episodes" in curves._suptitle.get_text()
    trav = figs["traversals"].axes[0]
    assert [t.get_text() for t in trav.get_yticklabels()] == ["z1  KL 2.00", "z2  KL 0.50", "z0  KL 0.10"]
    assert trav.get_xticklabels()[0].get_text() == "input\nframe" and len(trav.get_xticklabels()) == 10
    for fig in figs.values():
        plt.close(fig)


def test_learning_curves_do_not_describe_what_the_run_lacks(tmp_path):
    import matplotlib.pyplot as plt

    curves = {"m": {0: {"steps": np.arange(1, 41) * 10, "returns": np.ones(40)}}}
    fig = F.fig_agent_curves(curves, {"random": 0.0, "oracle": None}, "ppo", 400)
    text = [t.get_text() for t in fig.legends[0].get_texts()]
    assert text == ["training episodes", "random policy"]
    assert "1 seed: no spread across seeds" in fig._suptitle.get_text()
    plt.close(fig)


# --------------------------------------------------------------------------- videos

def test_gif_stays_within_its_bound_by_dropping_frames():
    from PIL import Image

    from darla.report.media import compose, encode_gif

    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (101, 64, 64, 3), dtype=np.uint8)  # incompressible: the worst case
    frames = compose([("source\nepisode return 1.00", noise), ("target_floor_object\nepisode return 0.00", noise[:40])])
    assert len(frames) == 101 and frames[0].shape[0] == 128 + 44
    gif, stride = encode_gif(frames, max_bytes=300_000)
    assert len(gif) <= 300_000 and stride > 1
    im = Image.open(io.BytesIO(gif))
    assert im.format == "GIF" and im.n_frames == len(range(0, 101, stride)) + (100 % stride != 0)
    small, one = encode_gif(frames[:3], max_bytes=10**7)
    assert one == 1 and Image.open(io.BytesIO(small)).n_frames == 3


# --------------------------------------------------------------------------- the tiny run's report

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from conftest import TINY

    from darla.config import config_from_dict
    from darla.pipeline import run_pipeline

    raw = json.loads(json.dumps(TINY))
    # a second method with its own, shorter budget (methods.NAME.total_timesteps)
    raw["methods"] = {"beta_vae": {"encoder": "vision"}, "short": {"encoder": "vision", "total_timesteps": 128}}
    cfg = config_from_dict(raw, "tiny.yaml")
    return cfg, run_pipeline(cfg, run_dir=tmp_path_factory.mktemp("runs") / "tiny", progress=False, log=lambda m: None)


def test_report_holds_a_bounded_video_per_method_and_provenance(tiny_run):
    from PIL import Image

    from darla.report.media import VIDEO_BUDGET_BYTES

    cfg, rd = tiny_run
    html = (rd.root / "report.html").read_text()
    assert (rd.root / "report.html").stat().st_size < REPORT_MAX_BYTES
    assert 4 / 3 * VIDEO_BUDGET_BYTES + 2 * 2**20 <= REPORT_MAX_BYTES  # the bound holds whatever the videos
    gifs = re.findall(r"data:image/gif;base64,([^'\"]+)", html)
    assert len(gifs) == len(cfg.methods)
    im = Image.open(io.BytesIO(base64.b64decode(gifs[0])))
    assert im.n_frames == cfg.env.max_steps + 1  # the reset frame and every step (20 steps fit the bound)
    from darla.report.figures import read_episodes

    first = {e["domain"]: e for e in read_episodes(rd.root / "transfer/episodes.csv") if e["seed"] == 0 and e["episode"] == "0"}
    with np.load(rd.root / "transfer/videos/beta_vae.npz") as z:  # the video is evaluation episode 0 itself
        assert list(z["domains"]) == ["source", "target_floor_object"]
        for d in z["domains"]:
            assert z[f"frames/{d}"].shape == (int(first[d]["length"]) + 1, 32, 32, 3) and z[f"scene/{d}"].shape == (4,)
            assert float(z[f"return/{d}"]) == first[d]["ret"]
    for key in ("darla", "git", "torch", "stable_baselines3", "gymnasium", "time per stage", "command", "CPU"):
        assert key in html, key
    assert "<details><summary>" in html and "scan:" not in html.split("<details>")[1] and "Left out, unused by this run: scan" in html
    assert "floor colour: <b>" in html and "Key:</b> white plus: the agent" in html  # captions from info["scene"], the env's key
    assert "This run has one seed" in html and "stays under 8 MiB" in html
    manifest = json.loads((rd.root / "manifest.json").read_text())
    assert manifest["provenance"]["device"] == "cpu" and "command" in manifest["provenance"]
    # stage 1's result depends on the thread count it ran on, so the run records it
    assert manifest["stages"]["vision"]["torch_threads"] == manifest["provenance"]["torch_threads"] >= 1
    assert f"torch on {manifest['provenance']['torch_threads']}" in html


def test_each_method_trains_for_its_own_budget_and_the_report_says_so(tiny_run):
    cfg, rd = tiny_run
    steps = {m: json.loads((rd.agent_dir(m, "ppo", 0) / "meta.json").read_text())["selected"]["timesteps"] for m in cfg.methods}
    assert steps == {"beta_vae": 256, "short": 128}
    assert "steps beta_vae 256, short 128 × 1 seed(s) per method" in (rd.root / "report.html").read_text()
    results = json.loads((rd.root / "results.json").read_text())
    assert results["agent"]["timesteps"] == {"beta_vae": 256, "short": 128}


def test_report_draws_reset_frames_from_the_transfer_stage_file_only(tiny_run, tmp_path, monkeypatch):
    """Stage 3 writes the reset frames (in its manifest entry, with their sha256); the report reads
    them and builds no env. A run directory without the file still gets its report, with a note."""
    import shutil

    import envs.registry
    from darla.report.run import collect_results, render_html
    from darla.runs import RunDir
    from vision.io import file_sha256

    cfg, rd = tiny_run
    path = rd.reset_frames()
    assert path == rd.root / "transfer/reset_frames.npz"
    recorded = json.loads((rd.root / "manifest.json").read_text())["stages"]["transfer"]["sha256"]
    assert recorded["transfer/reset_frames.npz"] == file_sha256(path)
    domains = ["vision", "source", "target_floor_object"]
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["domains"] == domains and meta["seeds"] == [cfg.transfer.seed_base + 7919 * k for k in range(4)]
        for d in domains:
            assert z[f"frames/{d}"].shape == (4, 32, 32, 3) and z[f"frames/{d}"].dtype == np.uint8
            assert len(meta["scenes"][d]) == 4 and "floor_colour" in meta["scenes"][d][0]
        assert meta["render_key"]["white plus"] == "the agent"

    def no_envs(*args, **kwargs):
        raise AssertionError("the report built an env")

    monkeypatch.setattr(envs.registry, "make_env", no_envs)
    html = render_html(cfg, rd, collect_results(cfg, rd))
    assert html.count('alt="reset frame from domain') == 4 * len(domains)
    assert "floor colour: <b>" in html and "Key:</b> white plus: the agent" in html

    old = RunDir(Path(shutil.copytree(rd.root, tmp_path / "old")))
    old.reset_frames().unlink()
    html = render_html(cfg, old, collect_results(cfg, old))
    assert "reset frame from domain" not in html and "no transfer/reset_frames.npz" in html
    assert "Zero-shot transfer" in html and "Learn to see" in html  # the rest of the report is all there


def test_tensorboard_has_stage_1_images_and_stage_3_scalars(tiny_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, rd = tiny_run
    ev = EventAccumulator(str(rd.root / "vision/tb"), size_guidance={"images": 0})
    ev.Reload()
    assert {"vision/reconstructions", "vision/traversals"} <= set(ev.Tags()["images"])
    steps = [e.step for e in ev.Images("vision/traversals")]
    every = cfg.vision.checkpoint_every
    assert steps == list(range(every, cfg.vision.steps + 1, every))  # one per checkpoint
    tb = EventAccumulator(str(rd.root / "transfer/tb/beta_vae_seed0"))
    tb.Reload()
    tags = set(tb.Tags()["scalars"])
    assert {"transfer/mean_return/source", "transfer/mean_return/target_floor_object", "transfer/normalised/source"} <= tags
    assert len(tb.Scalars("transfer/episode_return/source")) == cfg.transfer.n_episodes


# --------------------------------------------------------------------------- CLI

def test_darla_alone_prints_help_and_version(capsys):
    from darla.cli import main

    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: darla") and "pipeline" in out and "required" not in out + err
    assert main(["vision"]) == 0 and "traverse" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and re.fullmatch(r"darla \d+\.\d+\.\d+\n", capsys.readouterr().out)


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield (*prefix, name), sp
                yield from _commands(sp, (*prefix, name))


def test_every_help_exits_0_and_explains_every_argument(capsys):
    import argparse

    from darla.cli import build_parser, main

    commands = list(_commands(build_parser()))
    assert len(commands) > 12
    for words, parser in commands:
        with pytest.raises(SystemExit) as e:
            main([*words, "--help"])
        assert e.value.code == 0, words
        capsys.readouterr()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, (words, action.dest)  # every positional and option says what it is
            shown = parser.formatter_class("x")._get_help_string(action)
            if action.default not in (None, False, []) and not isinstance(action, argparse._StoreTrueAction):
                assert "default" in shown, (words, action.dest)
    vtrain = dict(commands)[("vision", "train")]
    assert "--update" not in vtrain.format_help()


# --------------------------------------------------------------------------- progress

def test_progress_off_a_terminal_is_lines_without_carriage_returns():
    from vision.progress import LineProgress

    out = io.StringIO()
    bar = LineProgress(100, desc="vision beta_vae", unit="step", file=out, every_s=0.0)
    for _ in range(3):
        bar.update(10)
    bar.set_postfix(loss="1.0")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and text.count("\n") == 4
    assert text.splitlines()[-1].startswith("vision beta_vae: 30/100 step (30%)") and text.rstrip().endswith("loss=1.0")


def test_vision_training_progress_in_a_pipe_has_no_carriage_returns(tmp_path, capfd):
    import torch

    from vision.train import TrainSettings, train_vision
    from vision.vae import BetaVAE

    torch.manual_seed(0)
    model = BetaVAE((3, 32, 32), 3, channels=[8, 8, 16, 16], hidden=32)
    frames = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    train_vision(model, frames, TrainSettings(steps=4, batch_size=16, checkpoint_every=2, log_every=2, progress=True), tmp_path)
    out, err = capfd.readouterr()
    assert "\r" not in out + err and "vision beta_vae: 4/4 step (100%)" in err


def test_envs_shows_what_each_domain_holds_out_as_factor_values(capsys):
    from darla.cli import main

    assert main(["envs"]) == 0
    out = capsys.readouterr().out
    assert ("domain vision: 144 combinations: every combination except floor_colour in {maroon, dark green} "
            "x object_colour in {green, orange}") in out
    assert "domain source: 24 combinations: floor_colour in {dark grey, navy} x wall_colour" in out
    assert "domain target_all_new: 8 combinations: background_colour in {maroon, dark green}" in out
