"""A tiny ONNX triage model (one strided convolution) with the shipped model's inputs and outputs.

Plumbing tests use it so that they do not depend on the trained model; its scores mean nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qoima.ai.preprocess import Preprocessing

OUTPUTS = ["abnormal", "tuberculosis", "pneumonia"]
PATCH_PX = 16


def write_tiny_model(directory: Path, *, name: str = "tiny-cxr", version: str = "0.0.1",
                     applies_to: dict[str, object] | None = None) -> Path:
    """Write model.onnx + model.json into ``directory`` and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    preprocessing = Preprocessing()
    crop = preprocessing.crop_px
    rng = np.random.default_rng(7)
    weights = rng.normal(0.0, 0.02, size=(len(OUTPUTS), 1, PATCH_PX, PATCH_PX)).astype(np.float32)
    bias = np.array([0.1, -0.2, 0.05], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["cam"],
                             kernel_shape=[PATCH_PX, PATCH_PX], strides=[PATCH_PX, PATCH_PX]),
            helper.make_node("ReduceMean", ["cam"], ["logits"], axes=[2, 3], keepdims=0),
            helper.make_node("Sigmoid", ["logits"], ["scores"]),
        ],
        "tiny_triage",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, crop, crop])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", len(OUTPUTS)]),
         helper.make_tensor_value_info("cam", TensorProto.FLOAT,
                                       ["batch", len(OUTPUTS), crop // PATCH_PX,
                                        crop // PATCH_PX])],
        initializer=[numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"))
    description = {
        "name": name,
        "version": version,
        "task": "plumbing test model",
        "file": "model.onnx",
        "preprocessing": preprocessing.to_json(),
        "output_names": OUTPUTS,
        "abnormality_output": "abnormal",
        "findings": OUTPUTS[1:],
        "thresholds": {"abnormal": 0.5, "tuberculosis": 0.5, "pneumonia": 0.5},
        "applies_to": applies_to or {"modalities": ["CR", "DX", "DR"],
                                     "body_parts": ["CHEST", "THORAX", ""],
                                     "view_positions": ["PA", "AP", ""]},
    }
    (directory / "model.json").write_text(json.dumps(description, indent=2))
    return directory
