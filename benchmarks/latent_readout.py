"""Can a policy read the task off frozen latents? Linear and MLP readouts on the source domain.

``perception_curve.py`` asks whether each factor is in the code: an MLP probe on ground-truth
images of the vision domain. A policy needs more. It must read the *relation* between factors
(where the good object is relative to the agent) from the code, with a network that RL trains
from reward alone. This script measures that on the frames an agent meets in the source domain:
a walk that follows the env's oracle with probability ``--oracle-mix`` (so pickups, respawns and
the states near objects occur as in a trained agent's episodes) and acts at random otherwise.

For each encoder it prints, on held-out frames of that walk:

- each state factor read from the latent means by a linear readout (logistic regression, or
  ridge for a continuous factor) and by an MLP (``--hidden``, default 256-256), beside chance (the majority class;
  R² 0 for a continuous factor);
- the oracle's action read the same way (behaviour cloning), beside the same MLP on the env's
  true state (what a perfect encoder allows) and the majority action.

``--test-domains`` also scores the same readouts, trained on ``--domain``, on walks in other
domains: zero-shot *readout* transfer. A policy is such a readout, so a factor whose readout
fails in a target domain is one the frozen policy loses there, whatever the source score.

``--policies`` reads fine-tuned encoders too (DARLA_FT, ``finetune: true``): each pixel
policy's ``model.zip`` lends its actor's encoder to the first checkpoint's model, which is then
read like any other, on the same walks.

A code that carries a factor only nonlinearly (MLP high, linear near chance) hands PPO a harder
problem than the true state does: the policy's first layers must learn the decoding, and the
relation between two such decodings, from reward. Inputs are standardised for every readout.

    python benchmarks/latent_readout.py runs/seek_avoid_cpu/vision/model.pt --env seek_avoid_v1
    python benchmarks/latent_readout.py A/model.pt B/model.pt --frames 12000 --json out.json
    python benchmarks/latent_readout.py runs/reacher_methods/vision/model.pt --env reacher \
        --test-domains target_background_target target_all_new
    python benchmarks/latent_readout.py runs/reacher_methods/vision/model.pt --env reacher \
        --policies runs/reacher_methods/agent/darla_ft/ppo_seed0/model.zip --test-domains target_all_new
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from envs.registry import get_env_info, make_env
from vision.registry import load_checkpoint


def collect(env_name: str, domain: str, size: int, n: int, oracle_mix: float, seed: int, max_steps: int = 100):
    """(frames uint8 (n, H, W, C), true states (n, k), oracle actions (n, ...)) along a seeded walk."""
    env = make_env(env_name, domain, size=size, max_steps=max_steps)
    if not hasattr(env.unwrapped, "oracle_action"):
        raise SystemExit(f"env {env_name!r} has no oracle_action(): nothing to clone")
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    frames, states, actions = [], [], []
    for _ in range(n):
        best = env.unwrapped.oracle_action()
        frames.append(obs)
        states.append(np.asarray(info["state"]))
        actions.append(best)
        obs, _, term, trunc, info = env.step(best if rng.random() < oracle_mix else env.action_space.sample())
        if term or trunc:
            obs, info = env.reset(seed=int(rng.integers(2**31)))
    return np.stack(frames), np.stack(states), np.asarray(actions)


@torch.no_grad()
def encode(model, frames: np.ndarray, batch: int = 500) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return torch.cat([model.encode(x[i : i + batch].float().div_(255.0))[0] for i in range(0, len(x), batch)]).numpy()


def readouts(
    x: np.ndarray, y: np.ndarray, n_train: int, seed: int, linear: bool = True, hidden: tuple[int, ...] = (256, 256),
    elsewhere: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, float]:
    """Held-out score of a linear and an MLP readout x → y (accuracy, or R² for float targets),
    with chance (majority class, or R² 0). ``elsewhere`` (name → (x, y), e.g. another domain's
    walk) adds each fitted readout's score there as ``"<readout> <name>"``."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    discrete = np.issubdtype(y.dtype, np.integer)
    tr, te = slice(0, n_train), slice(n_train, None)
    mlp_kw = dict(hidden_layer_sizes=hidden, max_iter=300, early_stopping=True, random_state=seed)
    if discrete:
        out = {"chance": float(np.bincount(y[te]).max() / len(y[te]))}
        models = {"linear": LogisticRegression(max_iter=3000), "mlp": MLPClassifier(**mlp_kw)}
    else:
        out = {"chance": 0.0}
        models = {"linear": Ridge(alpha=1.0), "mlp": MLPRegressor(**mlp_kw)}
    for name, m in models.items():
        if name == "linear" and not linear:
            continue
        fitted = make_pipeline(StandardScaler(), m).fit(x[tr], y[tr])
        out[name] = float(fitted.score(x[te], y[te]))
        for where, (xo, yo) in (elsewhere or {}).items():
            out[f"{name} {where}"] = float(fitted.score(xo, yo))
    return out


def policy_encoder(model, policy_zip: Path):
    """A copy of vision ``model`` whose encoder is a pixel policy's fine-tuned one: the actor's
    features extractor (``pi_features_extractor``), or the shared one when actor and critic share it."""
    from agents.train import read_policy_weights
    from vision.checkpoint import CheckpointError

    try:
        sd = read_policy_weights(policy_zip)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    for prefix in ("pi_features_extractor.vision.encoder.", "features_extractor.vision.encoder."):
        encoder = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if encoder:
            break
    else:
        raise SystemExit(f"{policy_zip} holds no vision encoder: only a pixel policy has one (a latent policy reads the frozen checkpoint's)")
    out = copy.deepcopy(model)
    try:
        out.encoder.load_state_dict(encoder)
    except RuntimeError as e:
        raise SystemExit(f"{policy_zip}: its encoder does not fit {type(model).__name__}'s: {str(e).splitlines()[0]}") from None
    return out.eval()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+", help="vision model.pt files (any darla vision model)")
    ap.add_argument("--env", default="seek_avoid_v1", help="env name (darla envs); default seek_avoid_v1")
    ap.add_argument("--domain", default="source", help="domain preset of the walk (default source)")
    ap.add_argument("--frames", type=int, default=12000, help="frames of the walk; the last quarter is held out (default 12000)")
    ap.add_argument("--oracle-mix", type=float, default=0.5, help="probability of the oracle's action at each step (default 0.5)")
    ap.add_argument("--max-steps", type=int, default=100, help="episode length of the walk (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the walk, the resets and the MLPs (default 0)")
    ap.add_argument("--hidden", type=int, nargs="+", default=[256, 256], help="the MLP readout's hidden layers (default 256 256, PPO's policy net in the presets)")
    ap.add_argument("--test-domains", nargs="+", default=[], metavar="DOMAIN",
                    help="also score the readouts trained on --domain on a walk in each of these domains")
    ap.add_argument("--policies", nargs="+", type=Path, default=[], metavar="ZIP",
                    help="also read each pixel policy's fine-tuned encoder (agent/<method>/<algo>_seed<k>/model.zip), "
                         "in the first checkpoint's model")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0.0 <= args.oracle_mix <= 1.0 or args.frames < 40:
        ap.error("need 0 ≤ --oracle-mix ≤ 1 and --frames ≥ 40")

    models = [(p, load_checkpoint(p).eval()) for p in args.checkpoints]
    models += [(z, policy_encoder(models[0][1], z)) for z in args.policies]
    sizes = {m.obs_shape[1] for _, m in models}
    if len(sizes) != 1:
        ap.error(f"the checkpoints expect different frame sizes {sorted(sizes)}; read them in separate runs")
    size = sizes.pop()
    t0 = time.time()
    frames, states, actions = collect(args.env, args.domain, size, args.frames, args.oracle_mix, args.seed, args.max_steps)
    n_train = args.frames * 3 // 4
    # Each other domain's walk: as many frames as the held-out part, its own seed (other episodes).
    others = {d: collect(args.env, d, size, args.frames - n_train, args.oracle_mix, args.seed + 1 + i, args.max_steps)
              for i, d in enumerate(args.test_domains)}
    hidden = tuple(args.hidden)
    module = importlib.import_module(get_env_info(args.env).entry_point.split(":")[0])
    names = list(getattr(module, "STATE_NAMES", [f"state[{j}]" for j in range(states.shape[1])]))
    result: dict = {
        "env": args.env, "domain": args.domain, "frames": args.frames, "held_out": args.frames - n_train,
        "oracle_mix": args.oracle_mix, "seed": args.seed, "test_domains": list(args.test_domains),
        "true_state_to_oracle_action": readouts(states.astype(np.float64), actions, n_train, args.seed, linear=False, hidden=hidden),
        "encoders": {},
    }
    print(f"{args.frames} frames of a walk in {args.env}/{args.domain} (oracle with p={args.oracle_mix}); "
          f"readouts trained on {n_train}, tested on {args.frames - n_train}")
    ceiling = result["true_state_to_oracle_action"]
    print(f"oracle action from the true state: MLP {ceiling['mlp']:.2f} (chance {ceiling['chance']:.2f})")
    for path, model in models:
        z = encode(model, frames)
        zo = {d: (encode(model, f), st, ac) for d, (f, st, ac) in others.items()}
        per = {n: readouts(z, states[:, j], n_train, args.seed, hidden=hidden,
                           elsewhere={d: (zd, st[:, j]) for d, (zd, st, _) in zo.items()}) for j, n in enumerate(names)}
        act = readouts(z, actions, n_train, args.seed, hidden=hidden, elsewhere={d: (zd, ac) for d, (zd, _, ac) in zo.items()})
        result["encoders"][str(path)] = {"factors": per, "oracle_action": act}
        print(f"\n{path}  ({type(model).__name__}, {model.latent_dim} latents)")
        cols = [("linear", "linear"), ("MLP", "mlp"), *[(f"MLP {d}", f"mlp {d}") for d in others]]
        print(f"  {'readout':<16} " + " ".join(f"{c:>{max(7, len(c))}}" for c, _ in cols) + f" {'chance':>7}")
        for n, r in [*per.items(), ("oracle action", act)]:
            print(f"  {n:<16} " + " ".join(f"{r[k]:>{max(7, len(c))}.2f}" for c, k in cols) + f" {r['chance']:>7.2f}")
    print(f"\n{time.time() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from darla.cli import report_failures

    raise SystemExit(report_failures(main, "latent_readout.py"))
