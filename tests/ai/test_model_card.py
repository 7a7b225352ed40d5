"""The shipped chest triage model, run through the product adapter, still earns its model card.

Runs src/qoima/ai/models/cxr_triage on the held-out TEST part of training/split.csv (adult
images: every second one in split order, to stay well inside the test timeout on 2 cores) and
checks the AUC against the figures in metrics.json, which docs/models/cxr-triage-v1.md quotes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from qoima.ai.metrics import operating_point, roc_auc
from qoima.ai.models.onnx_classifier import CXR_TRIAGE_DIR, OnnxClassifier

REPO = Path(__file__).parents[2]
DATA = REPO / ".." / "shared" / "data"
SPLIT_CSV = REPO / "training" / "split.csv"
MODEL_CARD = REPO / "docs" / "models" / "cxr-triage-v1.md"
AUC_TOLERANCE = 0.02
SUBSAMPLE_STEP = 2
BATCH = 32

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (shared data sets) absent")


@pytest.fixture(scope="module")
def metrics() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((CXR_TRIAGE_DIR / "metrics.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def test_scores() -> tuple[list[dict[str, str]], np.ndarray]:
    with SPLIT_CSV.open(newline="") as handle:
        rows = [
            row
            for row in csv.DictReader(handle)
            if row["split"] == "test" and row["population"] == "adult"
        ][::SUBSAMPLE_STEP]
    classifier = OnnxClassifier(CXR_TRIAGE_DIR, intra_op_threads=2)
    scores = []
    for start in range(0, len(rows), BATCH):
        batch = np.stack(
            [
                classifier.input_from_file(DATA / row["source"] / row["file"])
                for row in rows[start : start + BATCH]
            ]
        )
        scores.append(classifier.run(batch)[0])
    return rows, np.concatenate(scores)


def labels_for(
    rows: list[dict[str, str]], positive_label: str | None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows that are normal or (any, or the given) positive, and their 0/1 labels."""
    keep = [
        index
        for index, row in enumerate(rows)
        if row["label"] == "normal" or positive_label in (None, row["label"])
    ]
    labels = np.array([rows[index]["label"] != "normal" for index in keep], dtype=float)
    return np.array(keep), labels


@pytest.mark.parametrize(
    ("output", "column", "positive_label"),
    [("abnormal", 0, None), ("tuberculosis", 1, "tb"), ("pneumonia", 2, "covid19")],
)
def test_test_split_auc_matches_the_card(
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]],
    test_scores: tuple[list[dict[str, str]], np.ndarray],
    output: str,
    column: int,
    positive_label: str | None,
) -> None:
    rows, scores = test_scores
    keep, labels = labels_for(rows, positive_label)
    card_auc = metrics["test_adult"][output]["auc"]["estimate"]
    assert roc_auc(scores[keep, column], labels) >= card_auc - AUC_TOLERANCE


def test_abnormality_sensitivity_at_the_shipped_threshold(
    metrics: dict[str, dict[str, dict[str, dict[str, dict[str, float]]]]],
    test_scores: tuple[list[dict[str, str]], np.ndarray],
) -> None:
    rows, scores = test_scores
    keep, labels = labels_for(rows, None)
    threshold = json.loads((CXR_TRIAGE_DIR / "model.json").read_text())["thresholds"]["abnormal"]
    point = operating_point(scores[keep, 0], labels, threshold)
    card = metrics["test_adult"]["abnormal"]["operating_point"]["sensitivity"]
    assert point.sensitivity.estimate >= card["low"]


def test_the_card_quotes_the_measured_auc(
    metrics: dict[str, dict[str, dict[str, dict[str, float]]]],
) -> None:
    card = MODEL_CARD.read_text()
    for output in ("abnormal", "tuberculosis", "pneumonia"):
        assert f"{metrics['test_adult'][output]['auc']['estimate']:.3f}" in card
