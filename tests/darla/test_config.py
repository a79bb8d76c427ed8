"""Config loading: every malformed config gives one exact line naming file and key, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from darla.cli import main
from darla.config import ConfigError, config_from_dict, diff_configs, dump_config, load_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, raw, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    return p


def test_presets_load():
    for p in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(p)
        assert cfg.name == p.stem


def test_defaults_and_flat_model_params(tiny_raw):
    cfg = config_from_dict(tiny_raw, "t.yaml")
    assert cfg.vision.params["beta"] == 4.0
    assert cfg.vision.params["channels"] == [8, 8, 16, 16]
    # round trip: what is dumped loads back to the same config
    again = config_from_dict(yaml.safe_load(dump_config(cfg)), "again.yaml")
    assert again == cfg


def test_vision_fused_adam_reaches_stage_1s_settings(tiny_raw):
    """The key that reproduces pre-fused-kernel results is read by stage 1, not only accepted."""
    from darla.stages.vision import train_settings

    assert train_settings(config_from_dict(tiny_raw, "t.yaml"), 10, None, False).fused_adam is True
    tiny_raw["vision"]["fused_adam"] = False
    cfg = config_from_dict(tiny_raw, "t.yaml")
    assert cfg.vision.fused_adam is False and "beta" in cfg.vision.params
    assert train_settings(cfg, 10, None, False).fused_adam is False


# (mutation of the tiny config, exact message after "c.yaml: ")
MALFORMED = [
    (lambda r: r["vision"].update(betta=4.0), "vision.betta: unknown key for vision model 'beta_vae' (did you mean 'beta'?)"),
    (lambda r: r.update(seeed=1), "seeed: unknown key (did you mean 'seed'?)"),
    (lambda r: r["env"].update(sise=64), "env.sise: unknown key (did you mean 'size'?)"),
    (lambda r: r["vision"].update(lr="1e-4"), "vision.lr: expected a number (YAML reads '1e-4' as text: write 1.0e-4), got '1e-4'"),
    (lambda r: r["vision"].update(beta="1e-4"), "vision.beta: expected a number (YAML reads '1e-4' as text: write 1.0e-4), got '1e-4'"),
    (lambda r: r["vision"].update(latent_dim=0), "vision.latent_dim: must be ≥ 1, got 0"),
    (lambda r: r["vision"].update(episode_steps=0), "vision.episode_steps: must be ≥ 1, got 0"),
    (lambda r: r.update(metrics={"probe": "yes"}), "metrics.probe: expected true or false, got 'yes'"),
    (lambda r: r["vision"].update(steps=2.5), "vision.steps: expected an integer, got 2.5"),
    (lambda r: r["vision"].update(model="beta_vea"), "vision.model: unknown vision model 'beta_vea' (did you mean 'beta_vae'?); choose from "),
    (lambda r: r.update(device="gpu"), "device: must be one of ['auto', 'cpu', 'cuda'], got 'gpu'"),
    (lambda r: r["agent"].update(algo="ppo2"), "agent.algo: unknown algorithm 'ppo2' (did you mean 'ppo'?); choose from a2c, dqn, ppo, sac"),
    (lambda r: r["agent"]["hyperparams"].update(n_step=64), "agent.hyperparams.n_step: unknown key for PPO (did you mean 'n_steps'?)"),
    (lambda r: r["agent"]["hyperparams"].update(gamma="high"), "agent.hyperparams.gamma: expected a number, got 'high'"),
    (lambda r: r["agent"].update(seeds=[]), "agent.seeds: needs at least one seed"),
    (lambda r: r["agent"].update(seeds=[1, 1]), "agent.seeds: seeds must be distinct, got [1, 1]"),
    (lambda r: r["env"].update(name="seekavoid"), "env.name: unknown environment 'seekavoid' (did you mean 'seek_avoid'?); choose from "),
    (lambda r: r["env"]["domains"].update(source="sauce"), "env.domains.source: "),
    (lambda r: r["env"]["domains"]["targets"].update(bad="vision"), "env.domains.targets.bad: overlaps the vision domain"),
    (lambda r: r["env"]["domains"].update(targets={}), "env.domains.targets: name at least one target domain"),
    (lambda r: r["vision"].update(amp="yes"), "vision.amp: expected true or false, got 'yes'"),
    (lambda r: r.update(env=[1, 2]), "env: expected a mapping, got [1, 2]"),
    (lambda r: r["vision"].update(batch_size=512), "vision.batch_size: 512 exceeds vision.n_frames (256)"),
    (lambda r: r.update(name="../evil"), "name: use letters, digits, '-', '_' and '.', got '../evil'"),
    (lambda r: r["transfer"].update(n_episodes=-1), "transfer.n_episodes: must be ≥ 1, got -1"),
    (lambda r: r["vision"].update(model="beta_vae_dae", beta=1.0, dae={"params": {"corruptoin": "mask"}}),
     "vision.dae.params.corruptoin: unknown key for vision model 'dae' (did you mean 'corruption'?)"),
    (lambda r: r.update(methods={"d": {"encoder": "beta_vae_dae", "params": {"dae": {"steps": 10}}}}),
     "methods.d.params.dae: not a setting of vision model 'beta_vae_dae': code passes it in; its DAE is trained from vision.dae"),
    (lambda r: r["vision"].update(model="beta_vae_dae", beta=1.0, dae_kwargs={"latent_dim": 8}),
     "vision.dae_kwargs: not a setting of vision model 'beta_vae_dae': code passes it in"),
    (lambda r: r["vision"].update(select="udr", seeds=[1]), "vision.seeds: select: udr needs ≥ 2 distinct candidate seeds, got [1]"),
    (lambda r: r["vision"].update(seeds=[1, 2]), "vision.seeds: candidate seeds are only used with vision.select: udr"),
    (lambda r: r["vision"].update(select="best"), "vision.select: must be one of ['none', 'udr'], got 'best'"),
    (lambda r: r["vision"].update(select="udr", seeds=[1, 2], init_seed=3),
     "vision.init_seed: select: udr takes its candidates' seeds from vision.seeds"),
    (lambda r: r["vision"].update(init_seed=-1), "vision.init_seed: must be ≥ 0, got -1"),
    (lambda r: (r["vision"].pop("beta"), r["vision"].update(model="infogan")), "vision.lr: vision model 'infogan' takes its learning rates from its own arguments; remove vision.lr"),
    (lambda r: r["vision"].update(model="capacity_vae", beta=4.0), "vision.beta: unknown key for vision model 'capacity_vae' ("),
    (lambda r: (r["vision"].pop("beta"), r["vision"].update(model="capacity_vae", gamma="1e3")), "vision.gamma: expected a number (YAML reads '1e-4' as text: write 1.0e-4), got '1e3'"),
]


@pytest.mark.parametrize("mutate,expected", MALFORMED, ids=[m[1].split(":")[0] for m in MALFORMED])
def test_malformed_config_messages(tmp_path, tiny_raw, mutate, expected, capsys):
    mutate(tiny_raw)
    p = write(tmp_path, tiny_raw)
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}: {expected}"), str(ei.value)
    # the CLI: exit 2, exactly one line on stderr, no traceback
    assert main(["pipeline", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"darla: config error: {p}: {expected}")


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "name: x\nvision: {model: beta_vae\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: invalid YAML at line \d+, column \d+"):
        load_config(p)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the top level must be a mapping, got list"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_go_through_the_same_checks(tmp_path, tiny_raw):
    p = write(tmp_path, tiny_raw)
    cfg = load_config(p, ["vision.beta=8.0", "agent.seeds=[1, 2]"])
    assert cfg.vision.params["beta"] == 8.0 and cfg.agent.seeds == [1, 2]
    with pytest.raises(ConfigError, match=r"vision\.betaa: unknown key .*did you mean 'beta'"):
        load_config(p, ["vision.betaa=2.0"])
    with pytest.raises(ConfigError, match=r"vision\.latent_dim: expected an integer, got 'ten'"):
        load_config(p, ["vision.latent_dim=ten"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(p, ["vision.beta"])


def test_override_errors_name_the_command_line_and_take_exponents(tmp_path, tiny_raw):
    """A bad --set value is reported as the command line's, not the file's; 3e-4 there is a number
    (PyYAML reads it as text, which a file is still told about)."""
    p = write(tmp_path, tiny_raw)
    cfg = load_config(p, ["vision.lr=3e-4", "vision.beta=1E+1", "agent.seeds=[1, 2]"])
    assert cfg.vision.lr == 3e-4 and cfg.vision.params["beta"] == 10.0
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["vision.latent_dim=ten"])
    assert str(ei.value) == f"{p} (--set): vision.latent_dim: expected an integer, got 'ten'"
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["vision.lr=3e-4", "vision.latent_dim=2e1"])  # a float where an integer goes
    assert str(ei.value) == f"{p} (--set): vision.latent_dim: expected an integer, got 20.0"
    tiny_raw["vision"]["lr"] = "3e-4"
    p = write(tmp_path, tiny_raw)
    with pytest.raises(ConfigError) as ei:
        load_config(p, ["vision.beta=2.0"])  # the file's error stays the file's
    assert str(ei.value) == f"{p}: vision.lr: expected a number (YAML reads '1e-4' as text: write 1.0e-4), got '3e-4'"


def test_diff_configs_names_dotted_keys():
    assert diff_configs({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 1, "c": 5}, "d": 3}) == ["a.c"]


def test_cli_subprocess_exit_code(tmp_path, tiny_raw):
    tiny_raw["vision"]["latent_dim"] = "ten"
    p = write(tmp_path, tiny_raw)
    r = subprocess.run([sys.executable, "-m", "darla.cli", "pipeline", str(p)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == f"darla: config error: {p}: vision.latent_dim: expected an integer, got 'ten'"


def test_validating_an_external_env_registers_nothing(tiny_raw):
    """Validation builds the external env (its domains, SB3 on its spaces) and leaves gymnasium's
    registry and ENVS as they were, an earlier registration included; registering is one explicit call."""
    import gymnasium as gym

    from darla.config import register_external_env
    from envs.recolour import recoloured_gym_id, unregister_recoloured
    from envs.registry import ENVS

    tiny_raw["env"].update(name="ext_check", external={"gym_id": "darla/SeekAvoid-v0", "preset": "palette_v1",
                                                        "kwargs": {"size": 32, "domain": "source"}})
    tiny_raw["env"]["domains"]["targets"] = {"held_out": "target_all_new"}
    gym_id = recoloured_gym_id("ext_check")
    cfg = config_from_dict(tiny_raw, "ext.yaml")
    assert "ext_check" not in ENVS and gym_id not in gym.registry
    with pytest.raises(ConfigError, match="ext.yaml: metrics.enabled: .*ground-truth factors"):
        config_from_dict({**tiny_raw, "metrics": {"enabled": ["mig"]}}, "ext.yaml")
    assert "ext_check" not in ENVS and gym_id not in gym.registry  # a failed check leaves nothing either
    try:
        register_external_env(cfg.env)
        info, spec = ENVS["ext_check"], gym.registry[gym_id]
        assert info.scene_space.names == ("dark_colour", "mid_colour", "bright_colour")
        config_from_dict(tiny_raw, "ext.yaml")
        assert ENVS["ext_check"] is info and gym.registry[gym_id] is spec
    finally:
        unregister_recoloured("ext_check")


@pytest.mark.slow
def test_agent_workers_register_the_external_env_themselves(tiny_raw, tmp_path):
    """A spawned agent worker validates the config again, which registers nothing: it must make the
    external env by its own explicit registration (seconds of process start: slow)."""
    from darla.config import register_external_env
    from darla.pipeline import run_pipeline
    from envs.recolour import unregister_recoloured

    tiny_raw["env"].update(name="ext_workers", external={"gym_id": "darla/SeekAvoid-v0", "preset": "palette_v1",
                                                          "kwargs": {"size": 32, "domain": "source"}})
    tiny_raw["env"]["domains"]["targets"] = {"held_out": "target_all_new"}
    tiny_raw["agent"].update(seeds=[0, 1], total_timesteps=64, workers=2)
    cfg = config_from_dict(tiny_raw, "ext.yaml")
    try:
        run = run_pipeline(cfg, run_dir=tmp_path / "ext", progress=False, log=lambda m: None)
        stages = run.manifest()["stages"]
        assert all(stages[f"agent/{m}/ppo_seed{s}"]["status"] == "complete" for m in cfg.methods for s in (0, 1))
    finally:
        register_external_env(cfg.env)  # so that unregistering cannot fail, whichever step failed
        unregister_recoloured("ext_workers")


def test_env_external_runs_a_recoloured_gym_env_from_the_command_line(tmp_path, tiny_raw, capsys):
    """`env.external` registers any pixel gymnasium id under env.name, so `darla pipeline` runs it."""
    import yaml

    from darla.cli import main
    from envs.recolour import unregister_recoloured

    tiny_raw["env"].update(name="ext_cli", external={"gym_id": "darla/SeekAvoid-v0", "preset": "palette_v1",
                                                      "kwargs": {"size": 32, "domain": "source"}})
    tiny_raw["env"]["domains"]["targets"] = {"held_out": "target_all_new"}
    tiny_raw["agent"]["total_timesteps"] = 64
    tiny_raw["runs_dir"] = str(tmp_path / "runs")
    path = tmp_path / "ext.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    try:
        assert main(["pipeline", str(path), "--no-progress"]) == 0
        assert "held_out" in capsys.readouterr().out
        tiny_raw["env"]["external"]["gym_id"] = "NoSuchEnv-v9"
        path.write_text(yaml.safe_dump(tiny_raw))
        assert main(["pipeline", str(path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ext.yaml: env.external.gym_id: cannot make 'NoSuchEnv-v9'" in err[0]
    finally:
        unregister_recoloured("ext_cli")


def test_a_method_can_have_its_own_training_budget(tiny_raw):
    from darla.stages import stage_of_key
    from darla.stages.agent import agent_spec

    raw = {**tiny_raw, "methods": {"v": {"encoder": "vision"}, "pix": {"encoder": "pixels", "total_timesteps": 96}}}
    cfg = config_from_dict(raw, "t.yaml")
    assert cfg.timesteps_of("v") == cfg.agent.total_timesteps != 96
    assert cfg.timesteps_of("pix") == 96
    assert agent_spec(cfg, "pix", 0, None).total_timesteps == 96
    assert agent_spec(cfg, "v", 0, None).total_timesteps == cfg.agent.total_timesteps
    # a method's budget is read from stage 2 on: changing it keeps stage 1
    assert stage_of_key("methods.pix.total_timesteps", raw, raw) == "agent"
