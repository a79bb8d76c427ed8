"""Summary statistics for RL returns (Agarwal et al. 2021, via rliable).

Per-seed scores are the mean return of that seed's evaluation episodes. Across seeds we report
the mean and std, and the interquartile mean with a stratified-bootstrap 95% CI (rliable). With
a single seed the CI degenerates to the point estimate and says so (``n_seeds``).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from scipy import stats as sps


def iqm(x: Sequence[float] | np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean with 25% cut each side)."""
    return float(sps.trim_mean(np.asarray(x, dtype=np.float64).ravel(), 0.25))


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[np.random.RandomState]:
    """Seed numpy's *global* RNG for the duration, then restore it.

    rliable 1.2's StratifiedBootstrap draws its resamples with ``np.random.choice`` (the global
    RNG) and ignores the ``random_state`` it is given, so the same seed gave different CIs
    (caught by tests/agents/test_methods.py). Seeding and restoring the global state makes the
    bootstrap reproducible without leaking into anyone else's random numbers.
    """
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():  # arch's notice about rliable passing random_state
            warnings.filterwarnings("ignore", "random_state is deprecated", FutureWarning)
            yield np.random.RandomState(seed)
    finally:
        np.random.set_state(saved)


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
    with _seeded_global_numpy(seed) as state:
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


def normalise(returns: Sequence[float] | np.ndarray, low: float, high: float) -> np.ndarray:
    """Per-task normalised score: ``(R − low) / (high − low)``; 0 = random policy, 1 = scripted oracle.

    ``low``/``high`` are the random policy's and the oracle's mean returns on the same episodes.
    """
    if not high > low:
        raise ValueError(f"normalisation needs high > low, got low={low}, high={high}")
    return (np.asarray(returns, dtype=np.float64) - low) / (high - low)


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *, reps: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """P(X > Y) over runs (Mann-Whitney U / (n·m), ties count ½) with a stratified-bootstrap CI (rliable).

    ``x`` and ``y`` are per-seed scores of two methods on one task.
    """
    from rliable import library as rly
    from rliable import metrics as rlm

    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(y, dtype=np.float64).reshape(-1, 1)
    point = float(rlm.probability_of_improvement(x, y))
    if min(len(x), len(y)) < 2:
        return {"p": point, "ci": [point, point]}
    fn = lambda a, b: np.array([rlm.probability_of_improvement(a, b)])  # noqa: E731
    with _seeded_global_numpy(seed) as state:
        _, cis = rly.get_interval_estimates(
            {"xy": (x, y)}, fn, reps=reps, confidence_interval_size=confidence, random_state=state
        )
    return {"p": point, "ci": [float(cis["xy"][0, 0]), float(cis["xy"][1, 0])]}


def per_seed_ratios(target: Mapping[int, float], source: Mapping[int, float]) -> dict[int, float | None]:
    """Transfer ratio (target ÷ source mean return) per training seed."""
    return {s: transfer_ratio(target[s], source[s]) for s in sorted(source) if s in target}


def source_at_chance(
    per_seed: Mapping[int, Sequence[float]], random_mean: float, *, reps: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | bool | str | list[float]]:
    """Is a policy's source score indistinguishable from (or below) a random policy's?

    True when the lower end of the 95% CI of its mean return is at or below ``random_mean``
    (normalised: the CI includes 0 or lies below it). A transfer ratio of such a policy divides
    noise by noise. With two or more seeds the CI is the stratified bootstrap over seed means
    (as every other CI of the report); with one seed there is no seed-level spread, so it is a
    percentile bootstrap over that seed's episodes, which is narrower than a seed-level CI
    would be: a single-seed "above chance" is weaker evidence, and the report says so.
    """
    seeds = sorted(per_seed)
    if len(seeds) >= 2:
        ci = bootstrap_ci(np.array([np.mean(per_seed[s]) for s in seeds]), reps=reps, seed=seed, confidence=confidence)["mean"]
        over = "seeds"
    else:
        eps = np.asarray(per_seed[seeds[0]], dtype=np.float64)
        rng = np.random.default_rng(seed)
        means = eps[rng.integers(0, len(eps), size=(reps, len(eps)))].mean(axis=1)
        ci = _percentile_ci(means, confidence)
        over = "episodes"
    return {"at_chance": bool(ci[0] <= random_mean), "ci": [float(ci[0]), float(ci[1])], "over": over, "random": float(random_mean)}


def _percentile_ci(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap statistics (percentile method, as rliable's)."""
    alpha = (1 - confidence) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def _two_level_resample(groups: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One two-level bootstrap sample: groups drawn with replacement, then each drawn group's
    members drawn with replacement from it."""
    picked = rng.integers(0, len(groups), size=len(groups))
    return np.concatenate([groups[g][rng.integers(0, len(groups[g]), size=len(groups[g]))] for g in picked])


def _as_groups(groups: Sequence[Sequence[float]]) -> list[np.ndarray]:
    out = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if not out or any(g.size == 0 for g in out):
        raise ValueError("a two-level bootstrap needs at least one group and no empty group")
    return out


def hierarchical_iqm_ci(
    groups: Sequence[Sequence[float]], *, reps: int = 2000, seed: int = 0, confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile CI of the IQM of all members under a two-level bootstrap (groups, then members).

    For scores that come in groups sharing a random factor: policies (members) trained on one
    encoder (group). A bootstrap over policies treats them as independent and so ignores the
    encoder's variance; drawing encoders first puts it back, so with few encoders the CI is as
    wide as the spread between them says it should be (e.g. two encoders whose policies all
    score 0 and 1: [0, 1]). With one group it is the bootstrap over its members alone.
    """
    gs = _as_groups(groups)
    rng = np.random.default_rng(seed)
    return _percentile_ci(np.array([iqm(_two_level_resample(gs, rng)) for _ in range(reps)]), confidence)


def hierarchical_probability_of_improvement(
    x_groups: Sequence[Sequence[float]], y_groups: Sequence[Sequence[float]], *, reps: int = 2000, seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | list[float]]:
    """P(X > Y) over all members (ties ½), with a percentile CI from two-level bootstraps of
    ``x_groups`` and ``y_groups``, drawn independently (as rliable's stratified bootstrap draws X
    and Y): the encoder-aware counterpart of :func:`probability_of_improvement`."""
    xs, ys = _as_groups(x_groups), _as_groups(y_groups)

    def p(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])))

    rng = np.random.default_rng(seed)
    stats = np.array([p(_two_level_resample(xs, rng), _two_level_resample(ys, rng)) for _ in range(reps)])
    return {"p": p(np.concatenate(xs), np.concatenate(ys)), "ci": list(_percentile_ci(stats, confidence))}
