"""Summary statistics for RL returns (Agarwal et al. 2021, via rliable).

Per-seed scores are the mean return of that seed's evaluation episodes. Across seeds we report
the mean and std, and the interquartile mean with a stratified-bootstrap 95% CI (rliable). With
a single seed the CI degenerates to the point estimate and says so (``n_seeds``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps


def iqm(x: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean with 25% cut each side)."""
    return float(sps.trim_mean(np.asarray(x, dtype=np.float64).ravel(), 0.25))


def bootstrap_ci(
    scores: np.ndarray, *, reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, tuple[float, float]]:
    """IQM and mean with stratified-bootstrap CIs over runs, for a (runs, tasks) score matrix."""
    from rliable import library as rly
    from rliable import metrics as rlm

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = scores[:, None]
    if scores.shape[0] < 2:
        v = (iqm(scores), float(scores.mean()))
        return {"iqm": (v[0], v[0]), "mean": (v[1], v[1])}
    fn = lambda s: np.array([rlm.aggregate_iqm(s), rlm.aggregate_mean(s)])  # noqa: E731
    state = np.random.RandomState(seed)
    _, cis = rly.get_interval_estimates({"m": scores}, fn, reps=reps, confidence_interval_size=confidence, random_state=state)
    ci = cis["m"]
    return {"iqm": (float(ci[0, 0]), float(ci[1, 0])), "mean": (float(ci[0, 1]), float(ci[1, 1]))}


def summarize_returns(per_seed: Mapping[int, Sequence[float]], *, seed: int = 0) -> dict[str, float | int | list]:
    """Summarise episode returns grouped by training seed."""
    seeds = sorted(per_seed)
    seed_means = np.array([np.mean(per_seed[s]) for s in seeds])
    all_eps = np.concatenate([np.asarray(per_seed[s], dtype=np.float64) for s in seeds])
    ci = bootstrap_ci(seed_means, seed=seed)
    return {
        "n_seeds": len(seeds),
        "n_episodes": int(all_eps.size),
        "mean": float(seed_means.mean()),
        "std": float(seed_means.std(ddof=1)) if len(seeds) > 1 else 0.0,
        "episode_std": float(all_eps.std(ddof=1)) if all_eps.size > 1 else 0.0,
        "iqm": iqm(seed_means),
        "iqm_ci": list(ci["iqm"]),
        "mean_ci": list(ci["mean"]),
        "per_seed": seed_means.tolist(),
    }


def transfer_ratio(target_mean: float, source_mean: float) -> float | None:
    """Target ÷ source return; ``None`` where the source return is not positive (ratio meaningless)."""
    if source_mean <= 0:
        return None
    return float(target_mean / source_mean)
