"""Diagnostic accuracy metrics: AUC, intervals, thresholds, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from qoima.ai.metrics import (
    bootstrap_auc,
    calibration,
    operating_point,
    roc_auc,
    threshold_for_sensitivity,
    wilson_interval,
)


def pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    wins = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((wins + 0.5 * ties) / (positives.size * negatives.size))


def test_auc_equals_pairwise_count_with_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 200).astype(float)
    labels = (rng.random(200) < 0.4).astype(float)
    assert roc_auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))


def test_auc_extremes() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


def test_auc_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        roc_auc([0.1, 0.2], [1, 1])


def test_bootstrap_interval_contains_estimate() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(100), np.zeros(100)]
    scores = labels + rng.normal(0, 1, 200)
    interval = bootstrap_auc(scores, labels, resamples=300)
    assert interval.low < interval.estimate < interval.high


def test_wilson_interval_matches_published_value() -> None:
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662.
    interval = wilson_interval(81, 263)
    assert interval.low == pytest.approx(0.2553, abs=1e-4)
    assert interval.high == pytest.approx(0.3662, abs=1e-4)


def test_threshold_reaches_target_sensitivity() -> None:
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(57), np.zeros(80)]
    scores = rng.random(137)
    threshold = threshold_for_sensitivity(scores, labels, 0.9)
    point = operating_point(scores, labels, threshold)
    assert point.sensitivity.estimate >= 0.9
    # The next higher positive score would fall below the target.
    higher = np.sort(scores[labels == 1])
    higher = higher[higher > threshold]
    if higher.size:
        assert operating_point(scores, labels, higher[0]).sensitivity.estimate < 0.9


def test_calibration_of_perfectly_calibrated_scores_is_near_zero() -> None:
    rng = np.random.default_rng(4)
    scores = rng.random(50_000)
    labels = (rng.random(50_000) < scores).astype(float)
    assert calibration(scores, labels)["ece"] < 0.02
