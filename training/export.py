"""Export a trained TriageNet to ONNX (opset 17, dynamic batch) and write model.json.

Usage, to re-export a checkpoint: python -m training.export --checkpoint OUT/checkpoint.pt --out DIR
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from qoima.ai.preprocess import Preprocessing
from training.network import ExportWrapper, TriageNet
from training.sources import ABNORMAL, SourceConfig, load_config

MODEL_NAME = "cxr-triage"
OPSET = 17
TARGET_SENSITIVITY = 0.90
# Which studies the model applies to (read by the pipeline; see qoima.ai.preprocess).
APPLIES_TO = {
    "modalities": ["CR", "DX", "DR"],
    "body_parts": ["CHEST", "THORAX", ""],
    "view_positions": ["PA", "AP", ""],
    "population": "adult",
}


def export_model(
    net: TriageNet,
    config: SourceConfig,
    preprocessing: Preprocessing,
    thresholds: dict[str, float],
    training_info: dict[str, Any],
    out_dir: Path,
    version: str,
) -> None:
    net.eval()
    example = torch.zeros(1, 1, preprocessing.crop_px, preprocessing.crop_px)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ExportWrapper(net),
            (example,),
            str(out_dir / "model.onnx"),
            opset_version=OPSET,
            input_names=["image"],
            output_names=["scores", "cam"],
            dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}, "cam": {0: "batch"}},
            dynamo=False,
        )
    with torch.no_grad():
        _, cam = net.forward_with_cam(example)
    description = {
        "name": MODEL_NAME,
        "version": version,
        "task": "adult frontal chest radiograph triage: abnormality score and per-finding scores",
        "file": "model.onnx",
        "input": {
            "name": "image",
            "shape": ["batch", 1, preprocessing.crop_px, preprocessing.crop_px],
            "dtype": "float32",
        },
        "preprocessing": preprocessing.to_json(),
        "outputs": {
            "scores": {
                "name": "scores",
                "shape": ["batch", len(config.outputs)],
                "meaning": "sigmoid probability per output name",
            },
            "cam": {
                "name": "cam",
                "shape": ["batch", len(config.outputs), *cam.shape[2:]],
                "meaning": "class activation map (logit contributions); its spatial mean "
                "is the output's logit",
            },
        },
        "output_names": config.outputs,
        "abnormality_output": ABNORMAL,
        "findings": config.findings,
        "thresholds": thresholds,
        "operating_point": {
            "target_sensitivity": TARGET_SENSITIVITY,
            "chosen_on": "validation split, adult images (positives of the output vs normals)",
        },
        "applies_to": APPLIES_TO,
        "training": training_info,
        "model_card": "docs/models/cxr-triage-v1.md",
    }
    (out_dir / "model.json").write_text(json.dumps(description, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", default="1.0.0")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    config = load_config()
    net = TriageNet(len(checkpoint["outputs"]), width=checkpoint["width"])
    net.load_state_dict(checkpoint["state_dict"])
    preprocessing = Preprocessing.from_json(checkpoint["preprocessing"])
    args.out.mkdir(parents=True, exist_ok=True)
    export_model(
        net,
        config,
        preprocessing,
        checkpoint["thresholds"],
        checkpoint["training"],
        args.out,
        args.version,
    )


if __name__ == "__main__":
    main()
