"""``qoima ai list`` and ``qoima ai evaluate`` as a user runs them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ai.conftest import CHEST_CR, EXTREMITY_CR
from tests.servers import SHARED_DATA

TB_SET = SHARED_DATA / "cxr-tb-mendeley-pakistan"


def _qoima(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qoima", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ})


@pytest.fixture
def config(tmp_path: Path, tiny_models_dir: Path) -> Path:
    path = tmp_path / "qoima.toml"
    path.write_text(f'ai_models_dir = "{tiny_models_dir}"\ndata_dir = "{tmp_path / "data"}"\n')
    return path


def _labels_csv(tmp_path: Path, per_class: int = 4) -> tuple[Path, list[dict[str, str]]]:
    """A file,label CSV with a few TB and normal images, one DICOM, one unreadable file."""
    if not TB_SET.is_dir():
        pytest.skip(f"{TB_SET} not found")
    with (TB_SET / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    chosen = ([r for r in rows if r["label"] == "normal"][:per_class]
              + [r for r in rows if r["label"] == "tb"][:per_class])
    folder = tmp_path / "site"
    folder.mkdir()
    entries = [{"file": os.path.relpath(TB_SET / r["file"], folder), "label": r["label"]}
               for r in chosen]
    entries.append({"file": os.path.relpath(CHEST_CR, folder), "label": "tuberculosis"})
    entries.append({"file": os.path.relpath(EXTREMITY_CR, folder), "label": "normal"})
    (folder / "broken.png").write_bytes(b"not a png")
    entries.append({"file": "broken.png", "label": "normal"})
    path = folder / "labels.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["file", "label"])
        writer.writeheader()
        writer.writerows(entries)
    return path, entries


def test_list_shows_installed_models(config: Path) -> None:
    result = _qoima(config, "ai", "list", "--json")
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)
    tiny = next(m for m in models if m["name"] == "tiny-cxr")
    assert tiny["version"] == "0.0.1"
    assert tiny["pipeline"] == "chest_triage:tiny-cxr"
    assert "CR" in tiny["applies_to"]["modalities"]


def test_evaluate_reports_accuracy_and_site_threshold(config: Path, tmp_path: Path) -> None:
    labels, entries = _labels_csv(tmp_path)
    result = _qoima(config, "ai", "evaluate", "tiny-cxr", "--labels", str(labels), "--json",
                    "--sensitivity", "0.75")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    readable = [e for e in entries if e["file"] != "broken.png"
                and not e["file"].endswith("RG3_RLE.dcm")]
    assert report["model"] == "tiny-cxr"
    assert report["model_version"] == "0.0.1"
    assert report["n_images"] == len(readable)
    assert report["n_negative"] == sum(e["label"] == "normal" for e in readable)
    assert report["n_positive"] == report["n_images"] - report["n_negative"]
    skipped = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"broken.png", "RG3_RLE.dcm"}
    assert "EXTREMITY" in skipped["RG3_RLE.dcm"]
    auc = report["auc"]
    assert 0.0 <= auc["low"] <= auc["estimate"] <= auc["high"] <= 1.0
    site = report["site_operating_point"]
    assert site["target_sensitivity"] == 0.75
    assert site["sensitivity"]["estimate"] >= 0.75
    assert site["tp"] + site["fn"] == report["n_positive"]
    assert site["tn"] + site["fp"] == report["n_negative"]
    assert report["shipped_operating_point"]["threshold"] == 0.5
    assert {"ece", "brier", "bins"} <= set(report["calibration"])


def test_evaluate_unknown_model_fails_with_one_line(config: Path, tmp_path: Path) -> None:
    labels, _ = _labels_csv(tmp_path, per_class=1)
    result = _qoima(config, "ai", "evaluate", "no-such-model", "--labels", str(labels))
    assert result.returncode != 0
    assert "no-such-model" in result.stderr
