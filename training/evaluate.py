"""Evaluate the shipped model through the product adapter (onnxruntime) and write metrics.json.

Usage:
    python -m training.evaluate --data ../shared/data --set-thresholds
Runs the model on the validation and test parts of training/split.csv from the original image
files. With --set-thresholds, the operating thresholds (>= 90% sensitivity, adult validation
images) are chosen here and written into model.json; the test figures are then read at those
thresholds. Every figure in docs/models/cxr-triage-v1.md comes from the metrics.json this writes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from qoima.ai.metrics import (
    bootstrap_auc,
    calibration,
    operating_point,
    roc_auc,
    threshold_for_sensitivity,
)
from qoima.ai.models.onnx_classifier import CXR_TRIAGE_DIR, OnnxClassifier
from training.sources import ABNORMAL, Record, SourceConfig, label_targets, load_config, read_split

logger = logging.getLogger("training.evaluate")
TARGET_SENSITIVITY = 0.90
BATCH = 32
# The heatmap check: share of positive CAM mass in the central box (lung fields and
# mediastinum) versus the outer border strip, where burned-in text, markers and film edges sit.
CENTRAL_BOX = (0.15, 0.85)
BORDER_FRACTION = 0.08


def run_model(
    classifier: OnnxClassifier, records: list[Record], data_dir: Path
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    scores, cams = [], []
    for start in range(0, len(records), BATCH):
        chunk = records[start : start + BATCH]
        batch = np.stack([classifier.input_from_file(data_dir / r.source / r.file) for r in chunk])
        chunk_scores, chunk_cam = classifier.run(batch)
        scores.append(chunk_scores)
        cams.append(chunk_cam)
    return np.concatenate(scores), np.concatenate(cams)


def cam_mass_fractions(cams: npt.NDArray[np.float32]) -> dict[str, float]:
    """Mean share of positive CAM mass in the central box and in the border strip."""
    positive = np.maximum(cams, 0.0)
    height, width = positive.shape[-2:]
    ys = (np.arange(height) + 0.5) / height
    xs = (np.arange(width) + 0.5) / width
    low, high = CENTRAL_BOX
    central = ((ys >= low) & (ys <= high))[:, None] & ((xs >= low) & (xs <= high))[None, :]
    border = ((ys < BORDER_FRACTION) | (ys > 1 - BORDER_FRACTION))[:, None] | (
        (xs < BORDER_FRACTION) | (xs > 1 - BORDER_FRACTION)
    )[None, :]
    total = positive.sum(axis=(-2, -1))
    has_mass = total > 0
    central_share = positive[..., central].sum(axis=-1)[has_mass] / total[has_mass]
    border_share = positive[..., border].sum(axis=-1)[has_mass] / total[has_mass]
    return {
        "images": int(has_mass.sum()),
        "central_mass_mean": float(central_share.mean()),
        "central_area_fraction": float(central.mean()),
        "border_mass_mean": float(border_share.mean()),
        "border_area_fraction": float(border.mean()),
    }


def binary_report(
    scores: npt.NDArray[np.float32],
    labels: npt.NDArray[np.float32],
    threshold: float,
    resamples: int,
) -> dict[str, Any]:
    report: dict[str, Any] = {"positives": int(labels.sum()), "negatives": int((labels == 0).sum())}
    if labels.min() != labels.max():
        report["auc"] = bootstrap_auc(scores, labels, resamples=resamples).to_json()
    report["operating_point"] = operating_point(scores, labels, threshold).to_json()
    return report


def select(records: list[Record], **conditions: object) -> npt.NDArray[np.bool_]:
    return np.array([all(getattr(r, k) == v for k, v in conditions.items()) for r in records])


def output_rows(
    records: list[Record], config: SourceConfig, output: str, population: str = "adult"
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    targets, mask = label_targets(records, config)
    column = config.outputs.index(output)
    rows = np.flatnonzero(select(records, population=population) & (mask[:, column] > 0))
    return rows, targets[rows, column]


def split_counts(records: list[Record]) -> dict[str, dict[str, int]]:
    counts = Counter((r.split, f"{r.source}/{r.label}") for r in records)
    result: dict[str, dict[str, int]] = {}
    for (split, cell), count in sorted(counts.items()):
        result.setdefault(split, {})[cell] = count
    return result


def inference_speed(classifier: OnnxClassifier, crop_px: int) -> dict[str, float]:
    """Model-only throughput at batch 8 and latency at batch 1 (preprocessing excluded).

    Median and best of repeated timings: the best shows the machine's capacity when other
    processes leave its cores alone, the median what a shared machine gave.
    """
    rng = np.random.default_rng(0)
    batch8 = rng.normal(size=(8, 1, crop_px, crop_px)).astype(np.float32)
    single = batch8[:1]
    for _ in range(3):
        classifier.run(batch8)
    batch_times = []
    for _ in range(30):
        tick = time.perf_counter()
        classifier.run(batch8)
        batch_times.append(time.perf_counter() - tick)
    latencies = []
    for _ in range(60):
        tick = time.perf_counter()
        classifier.run(single)
        latencies.append(time.perf_counter() - tick)
    return {
        "batch8_images_per_s_median": float(8 / np.median(batch_times)),
        "batch8_images_per_s_best": float(8 / np.min(batch_times)),
        "batch1_latency_ms_median": float(np.median(latencies) * 1000),
        "batch1_latency_ms_p95": float(np.percentile(latencies, 95) * 1000),
        "load_average_1min": float(os.getloadavg()[0]),
        "cpu_count": float(os.cpu_count() or 0),
    }


def dicom_sample_scores(classifier: OnnxClassifier, folder: Path) -> list[dict[str, Any]]:
    """What the product path does with each (unlabelled) DICOM sample: skip, fail or score."""
    from pydicom import dcmread

    from qoima.errors import InvalidDicom

    results: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.dcm")):
        ds = dcmread(path)
        entry: dict[str, Any] = {"file": path.name}
        reason = classifier.check_applicable(ds)
        if reason is not None:
            entry["skipped"] = reason
        else:
            try:
                prediction = classifier.predict(classifier.input_from_dataset(ds)[np.newaxis])[0]
            except InvalidDicom as exc:
                entry["failed"] = str(exc).splitlines()[0]
            else:
                entry["scores"] = prediction.scores
                entry["flagged"] = sorted(k for k, v in prediction.flagged.items() if v)
        results.append(entry)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, default=CXR_TRIAGE_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument(
        "--set-thresholds",
        action="store_true",
        help="choose thresholds on validation and write them into model.json",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = load_config()
    all_records = read_split()
    classifier = OnnxClassifier(args.model_dir, intra_op_threads=args.threads)
    model_json_path = args.model_dir / "model.json"

    parts: dict[str, tuple[list[Record], npt.NDArray[np.float32], npt.NDArray[np.float32]]] = {}
    for split in ("val", "test"):
        records = [r for r in all_records if r.split == split]
        started = time.monotonic()
        scores, cams = run_model(classifier, records, args.data)
        logger.info("%s: %d images in %.0f s", split, len(records), time.monotonic() - started)
        parts[split] = (records, scores, cams)

    val_records, val_scores, _ = parts["val"]
    val_thresholds = {}
    val_auc = {}
    for column, output in enumerate(config.outputs):
        rows, labels = output_rows(val_records, config, output)
        val_thresholds[output] = threshold_for_sensitivity(
            val_scores[rows, column], labels, TARGET_SENSITIVITY
        )
        val_auc[output] = roc_auc(val_scores[rows, column], labels)
    model_json = json.loads(model_json_path.read_text())
    if args.set_thresholds:
        model_json["thresholds"] = val_thresholds
        model_json["operating_point"]["chosen_on"] = (
            "validation split, adult images (positives of the output vs normals), "
            "product preprocessing from the original files (training.evaluate --set-thresholds)"
        )
        model_json_path.write_text(json.dumps(model_json, indent=2) + "\n")
    thresholds = {k: float(v) for k, v in model_json["thresholds"].items()}

    test_records, test_scores, test_cams = parts["test"]
    targets, mask = label_targets(test_records, config)
    overall: dict[str, Any] = {}
    for column, output in enumerate(config.outputs):
        rows, labels = output_rows(test_records, config, output)
        report = binary_report(
            test_scores[rows, column], labels, thresholds[output], args.bootstrap
        )
        report["calibration"] = calibration(test_scores[rows, column], labels)
        overall[output] = report

    per_source: dict[str, Any] = {}
    for source, spec in config.sources.items():
        in_source = select(test_records, source=source)
        labels_map = spec["labels"]
        assert isinstance(labels_map, dict)
        source_report: dict[str, Any] = {"population": spec["population"]}
        findings_here = sorted({f for fs in labels_map.values() for f in fs})
        for output in [ABNORMAL, *findings_here]:
            column = config.outputs.index(output)
            rows = np.flatnonzero(in_source & (mask[:, column] > 0))
            source_report[output] = binary_report(
                test_scores[rows, column], targets[rows, column], thresholds[output], args.bootstrap
            )
        per_source[source] = source_report

    # Shortcut checks. Positives of one source against normals of another, and normals of
    # one hospital against normals of another: a score that separates those has learned the
    # hospital, not the disease.
    normals = {
        s: select(test_records, source=s, label=config.negative_label) for s in config.sources
    }
    cross: dict[str, Any] = {}
    tb_positive = select(test_records, source="cxr-tb-mendeley-pakistan", label="tb")
    covid_positive = select(test_records, source="cxr-covid19-radiography", label="covid19")
    for name, positives, negatives, output in (
        ("tb_vs_rsna_normals", tb_positive, normals["cxr-covid19-radiography"], "tuberculosis"),
        (
            "covid_vs_pakistan_normals",
            covid_positive,
            normals["cxr-tb-mendeley-pakistan"],
            "pneumonia",
        ),
        (
            "pakistan_normals_vs_rsna_normals_tb_score",
            normals["cxr-tb-mendeley-pakistan"],
            normals["cxr-covid19-radiography"],
            "tuberculosis",
        ),
        (
            "rsna_normals_vs_pakistan_normals_pneumonia_score",
            normals["cxr-covid19-radiography"],
            normals["cxr-tb-mendeley-pakistan"],
            "pneumonia",
        ),
    ):
        column = config.outputs.index(output)
        rows = np.flatnonzero(positives | negatives)
        labels = positives[rows].astype(np.float32)
        cross[name] = {
            "output": output,
            **binary_report(test_scores[rows, column], labels, thresholds[output], args.bootstrap),
        }
    specificity_by_normal_source = {}
    for source, is_normal in normals.items():
        rows = np.flatnonzero(is_normal)
        specificity_by_normal_source[source] = {
            output: operating_point(
                test_scores[rows, column], np.zeros(rows.size), thresholds[output]
            ).specificity.to_json()
            for column, output in enumerate(config.outputs)
        }

    # The worklist rule "any output at or above its threshold" (abnormal or a finding).
    threshold_row = np.array([thresholds[o] for o in config.outputs], dtype=np.float32)
    any_flag = (test_scores >= threshold_row).any(axis=1).astype(np.float32)
    abnormal_column = config.outputs.index(ABNORMAL)
    any_flag_report: dict[str, Any] = {}
    for name, population_rows in (
        ("adult", output_rows(test_records, config, ABNORMAL)),
        *(
            (
                source,
                (
                    np.flatnonzero(select(test_records, source=source)),
                    targets[select(test_records, source=source), abnormal_column],
                ),
            )
            for source in config.sources
        ),
    ):
        rows, labels = population_rows
        any_flag_report[name] = operating_point(any_flag[rows], labels, 0.5).to_json()

    heatmaps = {}
    for column, output in enumerate(config.outputs):
        rows, labels = output_rows(test_records, config, output)
        positives = rows[labels == 1]
        heatmaps[output] = cam_mass_fractions(test_cams[positives, column])

    metrics = {
        "model": {"name": model_json["name"], "version": model_json["version"]},
        "command": "python -m training.evaluate --data ../shared/data"
        + (" --set-thresholds" if args.set_thresholds else ""),
        "split_counts": split_counts(all_records),
        "target_sensitivity": TARGET_SENSITIVITY,
        "thresholds": thresholds,
        "val_auc_adult": val_auc,
        "test_adult": overall,
        "test_per_source": per_source,
        "test_shortcut_checks": cross,
        "test_specificity_by_normal_source": specificity_by_normal_source,
        "test_any_output_flag": any_flag_report,
        "test_heatmap_mass": heatmaps,
        "dicom_samples_unlabelled": dicom_sample_scores(
            classifier, args.data / "dicom-samples" / "cr_dx"
        ),
        "inference_speed_cpu": {
            "threads": args.threads,
            **inference_speed(classifier, classifier.description.preprocessing.crop_px),
        },
    }
    (args.model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("wrote %s", args.model_dir / "metrics.json")


if __name__ == "__main__":
    main()
