"""Diagnostic accuracy figures for binary scores: ROC AUC, confidence intervals, thresholds, ECE.

Pure numpy, so the product (`qoima ai evaluate`) and the training scripts compute them the same way.
Labels are 0/1 (1 = positive); scores are higher for more suspicious images.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    sensitivity: Interval
    specificity: Interval
    true_positives: int
    false_negatives: int
    true_negatives: int
    false_positives: int

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "sensitivity": self.sensitivity.to_json(),
            "specificity": self.specificity.to_json(),
            "tp": self.true_positives,
            "fn": self.false_negatives,
            "tn": self.true_negatives,
            "fp": self.false_positives,
        }


def _as_binary(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    score_array = np.asarray(scores, dtype=np.float64).ravel()
    label_array = np.asarray(labels, dtype=np.float64).ravel()
    if score_array.shape != label_array.shape:
        raise ValueError(f"{score_array.size} scores but {label_array.size} labels")
    if not np.isin(label_array, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return score_array, label_array


def average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each sorted element belongs to.
    is_start = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    run_ids = np.cumsum(is_start) - 1
    starts = np.flatnonzero(is_start)
    ends = np.r_[starts[1:], values.size]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty_like(values)
    ranks[order] = mean_rank[run_ids]
    return ranks


def roc_auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic (ties count one half)."""
    score_array, label_array = _as_binary(scores, labels)
    positives = int(label_array.sum())
    negatives = label_array.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative")
    rank_sum = average_ranks(score_array)[label_array == 1].sum()
    u_statistic = rank_sum - positives * (positives + 1) / 2.0
    return float(u_statistic / (positives * negatives))


def bootstrap_auc(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    resamples: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """AUC with a percentile bootstrap interval, resampling positives and negatives separately."""
    score_array, label_array = _as_binary(scores, labels)
    positive_scores = score_array[label_array == 1]
    negative_scores = score_array[label_array == 0]
    estimate = roc_auc(score_array, label_array)
    rng = np.random.default_rng(seed)
    both_labels = np.r_[np.ones(positive_scores.size), np.zeros(negative_scores.size)]
    values = np.empty(resamples)
    for index in range(resamples):
        sample = np.r_[
            rng.choice(positive_scores, positive_scores.size),
            rng.choice(negative_scores, negative_scores.size),
        ]
        values[index] = roc_auc(sample, both_labels)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(estimate, float(low), float(high))


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """A proportion with its Wilson score interval (Wilson 1927)."""
    if trials == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    proportion = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (proportion + z * z / (2 * trials)) / denominator
    half_width = z * sqrt(proportion * (1 - proportion) / trials + z * z / (4 * trials**2))
    half_width /= denominator
    return Interval(proportion, max(0.0, centre - half_width), min(1.0, centre + half_width))


def operating_point(
    scores: npt.ArrayLike, labels: npt.ArrayLike, threshold: float
) -> OperatingPoint:
    """Sensitivity and specificity (Wilson 95% CIs) when score >= threshold counts positive."""
    score_array, label_array = _as_binary(scores, labels)
    called = score_array >= threshold
    positive = label_array == 1
    true_positives = int((called & positive).sum())
    false_negatives = int((~called & positive).sum())
    true_negatives = int((~called & ~positive).sum())
    false_positives = int((called & ~positive).sum())
    return OperatingPoint(
        threshold=float(threshold),
        sensitivity=wilson_interval(true_positives, true_positives + false_negatives),
        specificity=wilson_interval(true_negatives, true_negatives + false_positives),
        true_positives=true_positives,
        false_negatives=false_negatives,
        true_negatives=true_negatives,
        false_positives=false_positives,
    )


def threshold_for_sensitivity(
    scores: npt.ArrayLike, labels: npt.ArrayLike, target_sensitivity: float
) -> float:
    """The highest threshold whose sensitivity (score >= threshold) is at least the target."""
    score_array, label_array = _as_binary(scores, labels)
    positive_scores = np.sort(score_array[label_array == 1])[::-1]
    if positive_scores.size == 0:
        raise ValueError("a sensitivity target needs at least one positive")
    needed = int(np.ceil(target_sensitivity * positive_scores.size - 1e-9))
    needed = min(max(needed, 1), positive_scores.size)
    return float(positive_scores[needed - 1])


def calibration(scores: npt.ArrayLike, labels: npt.ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, with the reliability table."""
    score_array, label_array = _as_binary(scores, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(score_array, edges[1:-1]), 0, bins - 1)
    table = []
    error = 0.0
    for bin_index in range(bins):
        members = index == bin_index
        count = int(members.sum())
        if count == 0:
            continue
        mean_score = float(score_array[members].mean())
        positive_rate = float(label_array[members].mean())
        error += count / score_array.size * abs(mean_score - positive_rate)
        table.append(
            {
                "low": float(edges[bin_index]),
                "high": float(edges[bin_index + 1]),
                "count": count,
                "mean_score": mean_score,
                "positive_rate": positive_rate,
            }
        )
    brier = float(np.mean((score_array - label_array) ** 2))
    return {"ece": float(error), "brier": brier, "bins": table}
