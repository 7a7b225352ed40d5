"""Render the model card's result tables from metrics.json, between the card's table markers.

Usage: python -m training.card_tables   (rewrites docs/models/cxr-triage-v1.md in place)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qoima.ai.models.onnx_classifier import CXR_TRIAGE_DIR

CARD = Path(__file__).parents[1] / "docs" / "models" / "cxr-triage-v1.md"
START = "<!-- tables:start (python -m training.card_tables) -->"
END = "<!-- tables:end -->"


def interval(value: dict[str, float]) -> str:
    return f"{value['estimate']:.3f} ({value['low']:.3f}-{value['high']:.3f})"


def result_row(name: str, output: str, report: dict[str, Any]) -> str:
    point = report["operating_point"]
    auc = interval(report["auc"]) if "auc" in report else "n/a"
    return (
        f"| {name} | {output} | {report['positives']} / {report['negatives']} | {auc} | "
        f"{point['threshold']:.4g} | {interval(point['sensitivity'])} | "
        f"{interval(point['specificity'])} |"
    )


def render(metrics: dict[str, Any]) -> str:
    header = (
        "| test set | output | pos / neg | AUC (95% CI) | threshold | "
        "sensitivity (95% CI) | specificity (95% CI) |\n|---|---|---|---|---|---|---|"
    )
    lines = ["### Split (images)", "", "| split | source/label: count |", "|---|---|"]
    for split, cells in metrics["split_counts"].items():
        lines.append(f"| {split} | " + ", ".join(f"{k}: {v}" for k, v in cells.items()) + " |")
    lines += ["", "### Adult test images, all sources pooled", "", header]
    for output, report in metrics["test_adult"].items():
        lines.append(result_row("adult (TB + COVID sets)", output, report))
    lines += ["", "### Per source (test part)", "", header]
    for source, report in metrics["test_per_source"].items():
        for output, figures in report.items():
            if output != "population":
                lines.append(result_row(f"{source} ({report['population']})", output, figures))
    lines += ["", "### Shortcut checks (test part)", "", header]
    for name, report in metrics["test_shortcut_checks"].items():
        lines.append(result_row(name, report["output"], report))
    lines += [
        "",
        "### Worklist rule: flagged if any output reaches its threshold (test part)",
        "",
        "| test set | pos / neg | sensitivity (95% CI) | specificity (95% CI) |",
        "|---|---|---|---|",
    ]
    for name, point in metrics["test_any_output_flag"].items():
        lines.append(
            f"| {name} | {point['tp'] + point['fn']} / {point['tn'] + point['fp']} | "
            f"{interval(point['sensitivity'])} | {interval(point['specificity'])} |"
        )
    lines += [
        "",
        "Specificity on each hospital's normals at the shipped thresholds:",
        "",
        "| normals from | " + " | ".join(metrics["thresholds"]) + " |",
        "|---|" + "---|" * len(metrics["thresholds"]),
    ]
    for source, by_output in metrics["test_specificity_by_normal_source"].items():
        lines.append(f"| {source} | " + " | ".join(interval(v) for v in by_output.values()) + " |")
    lines += [
        "",
        "### Calibration (adult test images)",
        "",
        "| output | ECE (10 bins) | Brier |",
        "|---|---|---|",
    ]
    for output, report in metrics["test_adult"].items():
        cal = report["calibration"]
        lines.append(f"| {output} | {cal['ece']:.3f} | {cal['brier']:.3f} |")
    lines += [
        "",
        "### Heatmap mass (test positives of each output)",
        "",
        "| output | images | CAM mass in central box | its area | mass in border strip "
        "| its area |",
        "|---|---|---|---|---|---|",
    ]
    for output, heat in metrics["test_heatmap_mass"].items():
        lines.append(
            f"| {output} | {heat['images']} | {heat['central_mass_mean']:.2f} | "
            f"{heat['central_area_fraction']:.2f} | {heat['border_mass_mean']:.2f} | "
            f"{heat['border_area_fraction']:.2f} |"
        )
    lines += [
        "",
        "### Unlabelled DICOM samples (`../shared/data/dicom-samples/cr_dx`), product path",
        "",
        "| file | outcome |",
        "|---|---|",
    ]
    for sample in metrics["dicom_samples_unlabelled"]:
        if "scores" in sample:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in sample["scores"].items())
            flagged = ", ".join(sample["flagged"]) or "none"
            outcome = f"scored: {scores}; flagged: {flagged}"
        else:
            outcome = (
                f"skipped: {sample['skipped']}"
                if "skipped" in sample
                else (f"failed: {sample['failed'][:90]}")
            )
        lines.append(f"| {sample['file']} | {outcome} |")
    lines += [
        "",
        "### CPU inference (onnxruntime, 2 threads, model only)",
        "",
        "| measured on | batch 8 images/s, median (best) | batch 1 latency median / p95 "
        "| preprocessing a 2,000 px image | 1-min load average |",
        "|---|---|---|---|---|",
    ]
    speeds = [
        {"label": "development machine, during training.evaluate", **metrics["inference_speed_cpu"]}
    ]
    speeds += [json.loads(path.read_text()) for path in sorted(CXR_TRIAGE_DIR.glob("speed_*.json"))]
    for speed in speeds:
        preprocess = speed.get("preprocess_2000px_ms_median")
        lines.append(
            f"| {speed['label']}{', ' + speed['cpu'] if 'cpu' in speed else ''} | "
            f"{speed['batch8_images_per_s_median']:.0f} "
            f"({speed['batch8_images_per_s_best']:.0f}) | "
            f"{speed['batch1_latency_ms_median']:.0f} / "
            f"{speed.get('batch1_latency_ms_p95', float('nan')):.0f} ms | "
            f"{'n/a' if preprocess is None else f'{preprocess:.0f} ms'} | "
            f"{speed['load_average_1min']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    metrics = json.loads((CXR_TRIAGE_DIR / "metrics.json").read_text())
    card = CARD.read_text()
    before, rest = card.split(START, 1)
    _, after = rest.split(END, 1)
    CARD.write_text(f"{before}{START}\n\n{render(metrics)}\n\n{END}{after}")


if __name__ == "__main__":
    main()
