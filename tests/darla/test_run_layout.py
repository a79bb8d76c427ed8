"""The run directory's layout is spelled in one place, :class:`darla.runs.RunDir`."""

from __future__ import annotations

from pathlib import Path

from darla.runs import RunDir


def test_run_dir_names_every_stage_folder(tmp_path):
    run = RunDir(tmp_path)
    assert run.vision_dir() == tmp_path / "vision"
    assert run.vision_model() == tmp_path / "vision" / "model.pt"
    assert run.vision_dir("beta_vae_1") == tmp_path / "vision" / "encoders" / "beta_vae_1"
    assert run.vision_model("beta_vae_1") == tmp_path / "vision" / "encoders" / "beta_vae_1" / "model.pt"
    assert run.dae_dir() == tmp_path / "vision" / "dae"
    assert run.agent_dir("darla", "ppo", 3) == tmp_path / "agent" / "darla" / "ppo_seed3"
    assert isinstance(run.agent_dir("darla", "ppo", 3), Path)
