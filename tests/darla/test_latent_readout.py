"""benchmarks/latent_readout.py: can a policy read the task off a frozen code?"""

from __future__ import annotations

import io
import json

import numpy as np
import torch
from conftest import load_benchmark

from vision.checkpoint import save_checkpoint
from vision.registry import get_model_class


def _script():
    return load_benchmark("latent_readout")


def test_readouts_tell_a_linear_code_from_noise():
    lr = _script()
    rng = np.random.default_rng(0)
    small = (32,)
    y = rng.integers(0, 4, 1000)
    linear_code = np.eye(4)[y] + 0.05 * rng.standard_normal((1000, 4))
    noise = rng.standard_normal((1000, 4))
    good = lr.readouts(linear_code, y, 750, seed=0, hidden=small)
    bad = lr.readouts(noise, y, 750, seed=0, hidden=small)
    assert good["linear"] > 0.95 and good["mlp"] > 0.9
    assert abs(bad["linear"] - 0.25) < 0.12 and bad["chance"] < 0.4
    # a factor the code holds only nonlinearly: a linear readout of the parity of two bits gets at
    # most 3 of the 4 corners right, an MLP all four
    bits = rng.integers(0, 2, (2000, 2))
    parity = bits[:, 0] ^ bits[:, 1]
    xor = lr.readouts(bits + 0.05 * rng.standard_normal((2000, 2)), parity, 1500, seed=0, hidden=(32, 32))
    assert xor["linear"] < 0.8 < 0.95 < xor["mlp"]
    # a readout scored elsewhere: where the code means the same, it reads as well; where the
    # code's meaning moved (another domain's code for the same factor), it fails
    other = rng.integers(0, 4, 400)
    moved = lr.readouts(linear_code, y, 750, seed=0, hidden=small, elsewhere={
        "same": (np.eye(4)[other], other), "moved": (np.eye(4)[(other + 1) % 4], other)})
    assert moved["linear same"] > 0.95 and moved["mlp same"] > 0.9
    assert moved["linear moved"] < 0.1 and moved["mlp moved"] < 0.1
    # continuous targets are scored by R²
    t = rng.standard_normal(400)
    r2 = lr.readouts(np.c_[t, rng.standard_normal(400)], t, 300, seed=0, hidden=small)
    assert r2["chance"] == 0.0 and r2["linear"] > 0.99


def test_main_reads_an_encoder_on_a_seeded_walk(tmp_path):
    lr = _script()
    torch.manual_seed(0)
    model = get_model_class("beta_vae")((3, 32, 32), latent_dim=4)
    ckpt = save_checkpoint(tmp_path / "model.pt", model)
    argv = [str(ckpt), "--env", "seek_avoid_v1", "--frames", "160", "--hidden", "16", "--threads", "1", "--json", str(tmp_path / "r.json")]
    out = lr.main(argv)
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(out))
    enc = out["encoders"][str(ckpt)]
    assert list(enc["factors"]) == ["agent_x", "agent_y", "good_x", "good_y", "bad_x", "bad_y"]
    for r in [*enc["factors"].values(), enc["oracle_action"]]:
        assert 0.0 <= r["linear"] <= 1.0 and 0.0 <= r["mlp"] <= 1.0 and 0.0 < r["chance"] <= 1.0
    # the same seed walks the same frames: the same numbers
    assert lr.main(argv) == out
    # readouts trained on the source walk, scored on walks in the target domains too
    both = lr.main([*argv[:-2], "--test-domains", "target_floor_wall", "target_all_new"])
    assert both["test_domains"] == ["target_floor_wall", "target_all_new"]
    for r in [*both["encoders"][str(ckpt)]["factors"].values(), both["encoders"][str(ckpt)]["oracle_action"]]:
        assert {"mlp target_floor_wall", "linear target_all_new"} <= set(r)
    assert both["encoders"][str(ckpt)]["factors"]["agent_x"]["mlp"] == enc["factors"]["agent_x"]["mlp"]


def test_policies_lend_their_fine_tuned_encoder(tmp_path, capsys):
    """--policies reads a pixel policy's actor encoder in the checkpoint's model: the same walk,
    other numbers; a zip without an encoder is refused in one line."""
    import zipfile

    import pytest

    lr = _script()
    torch.manual_seed(0)
    model = get_model_class("beta_vae")((3, 32, 32), latent_dim=4)
    ckpt = save_checkpoint(tmp_path / "model.pt", model)
    tuned = {f"pi_features_extractor.vision.encoder.{k}": v + 0.05 * torch.randn_like(v) for k, v in model.encoder.state_dict().items()}
    tuned |= {k.replace("pi_", "vf_", 1): torch.zeros_like(v) for k, v in tuned.items()}  # the critic's: not read
    policy = tmp_path / "model.zip"
    with zipfile.ZipFile(policy, "w") as z:
        buf = io.BytesIO()
        torch.save(tuned, buf)
        z.writestr("policy.pth", buf.getvalue())
    loaded = lr.policy_encoder(model, policy)
    assert all(torch.equal(loaded.encoder.state_dict()[k], tuned[f"pi_features_extractor.vision.encoder.{k}"]) for k in loaded.encoder.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(loaded.decoder.state_dict().values(), model.decoder.state_dict().values()))
    argv = [str(ckpt), "--env", "seek_avoid_v1", "--frames", "160", "--hidden", "16", "--threads", "1", "--policies", str(policy)]
    out = lr.main(argv)
    assert list(out["encoders"]) == [str(ckpt), str(policy)]
    frozen, fine = (out["encoders"][k]["factors"]["agent_x"] for k in (str(ckpt), str(policy)))
    assert frozen["chance"] == fine["chance"] and frozen["linear"] != fine["linear"]  # one walk, two codes

    latents = tmp_path / "latents.zip"
    with zipfile.ZipFile(latents, "w") as z:
        buf = io.BytesIO()
        torch.save({"mlp_extractor.policy_net.0.weight": torch.zeros(2, 4)}, buf)
        z.writestr("policy.pth", buf.getvalue())
    with pytest.raises(SystemExit, match="holds no vision encoder"):
        lr.main([*argv[:-1], str(latents)])
