"""DCI — Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018, "A Framework for
the Quantitative Evaluation of Disentangled Representations"; disentanglement_lib protocol, which
uses gradient-boosted trees as the regressor).

Importance matrix ``R`` (d codes × K factors): column j = the |impurity-based feature importances|
of a gradient-boosted classifier predicting factor j from the raw codes (each column sums to 1).
- Disentanglement D = Σ_i ρ_i (1 − H_K(P_i·)), P = R normalised per code (row), entropy base
  K = number of factors, ρ_i = code i's share of the total importance.
- Completeness C = Σ_j ρ̃_j (1 − H_d(P̃_·j)), P̃ = R normalised per factor, base d = number of codes.
- Informativeness = the classifiers' mean **accuracy** on the train and test points (dlib names
  them "err"/"loss", but they are accuracies).
Entropies via ``scipy.stats.entropy`` on ``R + 1e-11`` (dlib's smoothing, so an all-zero row or
column is uniform: maximal entropy); if every importance is 0 the weights ρ are uniform.

Estimator (``estimator`` setting) — the one deliberate change from dlib, for speed:
- ``"gbt"`` (dlib exact, available): ``GradientBoostingClassifier`` (100 trees, depth 3,
  learning rate 0.1, min_samples_leaf 1; ``GBT_KWARGS``), importances = its
  ``feature_importances_``, the mean decrease in impurity (MDI): per split, the squared-error
  reduction S_l²/N_l + S_r²/N_r − S_p²/N_p of the gradients the tree fits (S = sum of gradients,
  N = samples in the node), summed per feature over splits and trees, normalised.
- ``"hist_gbt"`` (default in FULL and FAST): ``HistGradientBoostingClassifier`` with the same
  boosting settings (``HIST_GBT_KWARGS``: 100 iterations, max_depth 3 → ≤ 8 leaves as GBC's
  depth 3, learning rate 0.1, min_samples_leaf 1, no L2 penalty, and early stopping **off** —
  its defaults would stop early above 10,000 points and use min_samples_leaf 20). It has no
  ``feature_importances_``, so ``_hist_mdi`` computes GBC's MDI formula above on its trees by
  replaying the boosting on the train points (each iteration's gradients p − onehot(y) at the
  raw scores so far, node sums S and counts N, the per-split reduction), normalised per factor.
  The replayed scores also give the train predictions (equal to ``predict``, tested).

Why ``"hist_gbt"`` is faithful: same model family and size, and the same importance formula —
with one boosting iteration, where both libraries grow the same tree, it equals GBC's
``feature_importances_`` to 1e-9 (tested). What still differs is how trees are grown: HGB picks
splits by the Newton gain G²/H over ≤ 255 quantile bins per code, GBC by the squared error of
the gradients over exact thresholds. Rejected: HGB's own split gains as importances (Newton
form, hessian sums in place of counts) — further from GBC at 10,000 points (sizes 4,4,4,3,6:
D 0.401 / C 0.329 vs GBC 0.432 / 0.358; dSprites sizes: D 0.245 vs 0.215); permutation
importance (a different notion: a drop in accuracy, can be negative); GBC on fewer points (cost
∝ points × classes, still minutes with 40-class factors).

Measured on the same codes (``benchmarks/metrics_throughput.py``: 10,000 train + 5,000 test
points, 10 codes = noisy linear mix of 5 factors; this machine: 2 shared cores, load ≈3,
sklearn 1.9.1), "hist_gbt" vs "gbt":
- factor sizes (3, 6, 40, 32, 32) (dSprites): D 0.2165 vs 0.2151, C 0.1735 vs 0.1705,
  informativeness test 0.468 vs 0.451; time ≈23 s vs 514 s wall (418 s CPU);
- factor sizes (4, 4, 4, 3, 6): D 0.441 vs 0.432, C 0.362 vs 0.358, informativeness test
  0.933 vs 0.923; time ≈5 s vs 73 s.
At 2,000 train points (sizes 4, 4, 4, 3, 6; 10 codes) D "hist_gbt" vs "gbt": identity + 5 dead
codes 0.993 vs 1.000, rotated 0.610 vs 0.580, linear mix 0.480 vs 0.453, half mixed 0.974 vs
0.973 (the split-gain variant: 0.990, 0.585, 0.450, 0.952). So expect |ΔD| ≲ 0.03 against
dlib's estimator, smaller at the full 10,000 points. Fit, replay and predict run with OpenMP
limited to ``NUM_THREADS`` = 1 (see there).

Deviations from dlib (edge cases, where dlib crashes or divides by zero):
- a factor constant on the train points is skipped (no classifier can be fitted; dlib raises) and
  listed in ``skipped_factors``; D, C and informativeness are over the remaining factors; if none
  remain every score is 0.0;
- a single remaining factor (K = 1) or a single code (d = 1): an entropy in base 1 is 0/0; we take
  the entropy of a one-point distribution as 0, so each per-code D (resp. per-factor C) is 1.
- dlib's ``GradientBoostingClassifier()`` has no fixed ``random_state`` (it only breaks ties
  between features); ours is seeded.

Note (not a deviation): permuting the codes permutes R only up to tie-breaking — when two codes'
best splits cut a node identically the tree takes the lower index (GBC: a random feature order),
which moved D by ≈1e-3 in the tests; true of dlib's estimator as well.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.special
import scipy.stats
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from envs.factors import GroundTruthData
from vision.metrics.utils import RepresentFn, generate_batch_factor_code

FULL: dict[str, Any] = {"num_train": 10_000, "num_test": 5_000, "estimator": "hist_gbt"}
FAST: dict[str, Any] = {"num_train": 1_000, "num_test": 500, "estimator": "hist_gbt"}

#: dlib's ``GradientBoostingClassifier()`` defaults, stated.
GBT_KWARGS: dict[str, Any] = {
    "loss": "log_loss",
    "learning_rate": 0.1,
    "n_estimators": 100,
    "subsample": 1.0,
    "max_depth": 3,
    "min_samples_split": 2,
    "min_samples_leaf": 1,
    "max_features": None,
    "max_leaf_nodes": None,
    "n_iter_no_change": None,
}
#: The same boosting settings for ``HistGradientBoostingClassifier`` (see the module docstring).
HIST_GBT_KWARGS: dict[str, Any] = {
    "loss": "log_loss",
    "learning_rate": 0.1,
    "max_iter": 100,
    "max_depth": 3,
    "max_leaf_nodes": None,
    "min_samples_leaf": 1,
    "l2_regularization": 0.0,
    "max_features": 1.0,
    "max_bins": 255,
    "early_stopping": False,
    "class_weight": None,
}
ESTIMATORS = ("hist_gbt", "gbt")
SMOOTHING = 1e-11
#: OpenMP threads for HistGradientBoostingClassifier fit and predict. 1: on the shared 2-core
#: machine OpenMP's spinning threads made the fits ≈6× and the predicts ≈30× slower (a 40-class
#: factor on 10k×10 codes: predict 46 s vs 1.5 s); results do not depend on it. Raise it on an
#: idle many-core machine.
NUM_THREADS = 1


_PRIVATE_API_MESSAGE = (
    "HistGradientBoostingClassifier's private trees (_predictors, _baseline_prediction) are "
    "missing or changed in this sklearn version; use estimator='gbt'"
)


def _stack_trees(trees: list[Any]) -> dict[str, np.ndarray]:
    """One iteration's trees (one per class) as (trees, max nodes) arrays, padded with leaves."""
    k, m = len(trees), max(len(t.nodes) for t in trees)
    fields = {
        "feature_idx": (np.int64, 0),
        "num_threshold": (np.float64, 0.0),
        "left": (np.int64, 0),
        "right": (np.int64, 0),
        "is_leaf": (bool, True),
        "depth": (np.int64, 0),
        "count": (np.float64, 0.0),
        "value": (np.float64, 0.0),
    }
    out = {name: np.full((k, m), fill, dtype=dtype) for name, (dtype, fill) in fields.items()}
    for i, tree in enumerate(trees):
        for name in fields:
            out[name][i, : len(tree.nodes)] = tree.nodes[name]
    return out


def _hist_mdi(
    model: HistGradientBoostingClassifier, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(MDI importances (d,), predicted train classes (n,)) of a fitted HistGradientBoostingClassifier.

    Replays the boosting on the train points: at each iteration the gradients p − onehot(y) at
    the raw scores so far; each tree's node sums S of them and node counts N; per split
    S_l²/N_l + S_r²/N_r − S_p²/N_p added to its feature — GradientBoostingClassifier's
    ``feature_importances_`` formula, on these trees. Rows are routed with the trees' own
    thresholds (x ≤ threshold → left), all trees of an iteration at once. Reads the private
    ``_predictors`` and ``_baseline_prediction``, and checks the replay against the trees' node
    counts, so an incompatible sklearn fails loudly instead of scoring wrongly.
    """
    predictors = getattr(model, "_predictors", None)
    baseline = getattr(model, "_baseline_prediction", None)
    if predictors is None or baseline is None:
        raise RuntimeError(_PRIVATE_API_MESSAGE)
    n, d = x.shape
    k = model.n_trees_per_iteration_
    onehot = (model.classes_[:, None] == y[None, :]).astype(np.float64)  # (classes, n)
    target = onehot[1:] if k == 1 else onehot  # binary: one tree, on the log-odds of class 1
    raw = np.repeat(np.asarray(baseline, dtype=np.float64).reshape(k, 1), n, axis=1)  # (k, n)
    x_flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
    row_base = (np.arange(n) * d)[None, :]
    decrease = np.zeros(d)
    for trees in predictors:
        if k == 1:
            prob = scipy.special.expit(raw)
        else:
            prob = np.exp(raw - raw.max(axis=0))
            prob /= prob.sum(axis=0)
        grad = prob - target  # (k, n); GBC fits −grad, the sign does not matter below
        t = _stack_trees(trees)
        m = t["count"].shape[1]
        tree_base = (np.arange(k) * m)[:, None]
        flat = {name: a.ravel() for name, a in t.items()}
        node = np.zeros((k, n), dtype=np.int64) + tree_base  # flat index: tree · m + node
        for _ in range(int(t["depth"].max())):
            go_left = x_flat[row_base + flat["feature_idx"][node]] <= flat["num_threshold"][node]
            child = np.where(go_left, flat["left"][node], flat["right"][node]) + tree_base
            node = np.where(flat["is_leaf"][node], node, child)
        sums = np.bincount(node.ravel(), weights=grad.ravel(), minlength=k * m).reshape(k, m)
        counts = np.bincount(node.ravel(), minlength=k * m).reshape(k, m)
        if not np.array_equal(counts[t["is_leaf"]], t["count"][t["is_leaf"]]):
            raise RuntimeError(_PRIVATE_API_MESSAGE)
        for depth in range(int(t["depth"].max()) - 1, -1, -1):  # internal sums, bottom-up
            ti, pi = np.nonzero(~t["is_leaf"] & (t["depth"] == depth))
            sums[ti, pi] = sums[ti, t["left"][ti, pi]] + sums[ti, t["right"][ti, pi]]
        ti, pi = np.nonzero(~t["is_leaf"])
        li, ri, cnt = t["left"][ti, pi], t["right"][ti, pi], t["count"]
        gain = sums[ti, li] ** 2 / cnt[ti, li] + sums[ti, ri] ** 2 / cnt[ti, ri]
        gain -= sums[ti, pi] ** 2 / cnt[ti, pi]
        decrease += np.bincount(t["feature_idx"][ti, pi], weights=gain, minlength=d)
        raw += flat["value"][node]
    decrease = np.abs(decrease)  # as dlib's np.abs(feature_importances_)
    total = decrease.sum()
    pred = (raw[0] > 0).astype(np.int64) if k == 1 else np.argmax(raw, axis=0)
    return (decrease / total if total > 0 else decrease), model.classes_[pred]


def _fit_importances(
    x_train: np.ndarray, y_train: np.ndarray, estimator: str, random_state: int
) -> tuple[np.ndarray, np.ndarray, Any]:
    """(importances (d,), predicted train classes (n,), fitted model) for one factor."""
    if estimator == "gbt":
        model = GradientBoostingClassifier(**GBT_KWARGS, random_state=random_state)
        model.fit(x_train, y_train)
        return np.abs(model.feature_importances_), model.predict(x_train), model
    if estimator == "hist_gbt":
        model = HistGradientBoostingClassifier(**HIST_GBT_KWARGS, random_state=random_state)
        model.fit(x_train, y_train)
        return (*_hist_mdi(model, x_train, y_train), model)
    raise ValueError(f"unknown estimator {estimator!r}; choose from {list(ESTIMATORS)}")


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """``scipy.stats.entropy`` of ``p + 1e-11`` along ``axis`` in ``base``; 0 when base == 1."""
    if base == 1:
        return np.zeros(np.delete(p.shape, axis))
    return scipy.stats.entropy(p + SMOOTHING, base=base, axis=axis)


def _disentanglement(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """(D, per-code D) of a (d, K) importance matrix (dlib ``disentanglement``)."""
    per_code = 1.0 - _entropy(importance, importance.shape[1], axis=1)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    rho = weights.sum(axis=1) / weights.sum()
    return float(np.sum(rho * per_code)), per_code


def _completeness(importance: np.ndarray) -> tuple[float, np.ndarray]:
    """(C, per-factor C) of a (d, K) importance matrix (dlib ``completeness``)."""
    per_factor = 1.0 - _entropy(importance, importance.shape[0], axis=0)
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    rho = weights.sum(axis=0) / weights.sum()
    return float(np.sum(rho * per_factor)), per_factor


def compute_dci(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    *,
    estimator: str = "hist_gbt",
    random_state: int = 0,
) -> dict[str, Any]:
    """DCI on arrays: codes (n, d) float, factors (n, K) int classes."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose from {list(ESTIMATORS)}")
    x_train = np.asarray(train_codes, dtype=np.float64)
    x_test = np.asarray(test_codes, dtype=np.float64)
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        raise ValueError("DCI needs finite codes (NaN or inf found)")
    num_codes, num_factors = x_train.shape[1], train_factors.shape[1]
    varies = np.array(
        [len(np.unique(train_factors[:, j])) > 1 for j in range(num_factors)], dtype=bool
    )
    kept = np.flatnonzero(varies)
    importance = np.zeros((num_codes, len(kept)))
    acc_train, acc_test = [], []
    with threadpool_limits(limits=NUM_THREADS, user_api="openmp"):  # see NUM_THREADS
        for col, j in enumerate(kept):
            importance[:, col], pred_train, model = _fit_importances(
                x_train, train_factors[:, j], estimator, random_state
            )
            acc_train.append(float(np.mean(pred_train == train_factors[:, j])))
            acc_test.append(float(np.mean(model.predict(x_test) == test_factors[:, j])))
    out: dict[str, Any] = {
        "importance_matrix": importance.tolist(),
        "scored_factors": kept.tolist(),
        "skipped_factors": np.flatnonzero(~varies).tolist(),
        "estimator": estimator,
        "estimator_kwargs": dict(HIST_GBT_KWARGS if estimator == "hist_gbt" else GBT_KWARGS),
    }
    if len(kept) == 0:
        zeros = {k: 0.0 for k in ("dci", "disentanglement", "completeness")}
        empty = {"informativeness_train_per_factor": [], "informativeness_test_per_factor": []}
        return {**zeros, "informativeness_train": 0.0, "informativeness_test": 0.0, **empty, **out}
    d, per_code = _disentanglement(importance)
    c, per_factor = _completeness(importance)
    return {
        "dci": d,
        "disentanglement": d,
        "completeness": c,
        "informativeness_train": float(np.mean(acc_train)),
        "informativeness_test": float(np.mean(acc_test)),
        "disentanglement_per_code": per_code.tolist(),
        "completeness_per_factor": per_factor.tolist(),
        # Accuracy of each scored factor's classifier: which factors the code carries at all,
        # however entangled (completeness says how concentrated; this says whether it is there).
        "informativeness_train_per_factor": acc_train,
        "informativeness_test_per_factor": acc_test,
        **out,
    }


def accuracy_by_factor(result: dict[str, Any]) -> dict[int, float]:
    """Factor index → test accuracy of its classifier, for the factors a DCI ``result`` scored
    (constant factors are skipped, so an index may be missing)."""
    return dict(zip(result["scored_factors"], result["informativeness_test_per_factor"]))


def dci(
    data: GroundTruthData,
    represent: RepresentFn,
    rng: np.random.Generator,
    *,
    num_train: int = FULL["num_train"],
    num_test: int = FULL["num_test"],
    estimator: str = FULL["estimator"],
) -> dict[str, Any]:
    """DCI of ``represent`` on ``data``: disentanglement under key ``dci`` (and ``disentanglement``)."""
    train = generate_batch_factor_code(data, represent, num_train, rng)
    test = generate_batch_factor_code(data, represent, num_test, rng)
    seed = int(rng.integers(2**31 - 1))
    out = compute_dci(
        train.codes, train.factors, test.codes, test.factors, estimator=estimator, random_state=seed
    )
    return {**out, "num_train": num_train, "num_test": num_test}
