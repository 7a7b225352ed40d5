"""CPU inference speed of a shipped model with onnxruntime (model only, and preprocessing).

Usage: taskset -c 0,1 python -m training.bench_speed --threads 2 --out speed.json
Median and best of repeated timings: the best shows what the cores give when nothing else runs,
the median what the machine gave while measuring (its load average is recorded too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from qoima.ai.models.onnx_classifier import CXR_TRIAGE_DIR, OnnxClassifier
from qoima.ai.preprocess import model_input


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def measure(classifier: OnnxClassifier, repeats: int = 30) -> dict[str, Any]:
    crop_px = classifier.description.preprocessing.crop_px
    rng = np.random.default_rng(0)
    batch8 = rng.normal(size=(8, 1, crop_px, crop_px)).astype(np.float32)
    for _ in range(3):
        classifier.run(batch8)
    batch_times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        classifier.run(batch8)
        batch_times.append(time.perf_counter() - tick)
    latencies = []
    for _ in range(2 * repeats):
        tick = time.perf_counter()
        classifier.run(batch8[:1])
        latencies.append(time.perf_counter() - tick)
    # Preprocessing of a decoded full-size radiograph (2,000 x 2,000, 12-bit values).
    radiograph = rng.integers(0, 4096, size=(2000, 2000)).astype(np.float32)
    preprocess_times = []
    for _ in range(10):
        tick = time.perf_counter()
        model_input(radiograph, classifier.description.preprocessing)
        preprocess_times.append(time.perf_counter() - tick)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "usable_cores": usable,
        "load_average_1min": os.getloadavg()[0],
        "batch8_images_per_s_median": float(8 / np.median(batch_times)),
        "batch8_images_per_s_best": float(8 / np.min(batch_times)),
        "batch1_latency_ms_median": float(np.median(latencies) * 1000),
        "batch1_latency_ms_p95": float(np.percentile(latencies, 95) * 1000),
        "preprocess_2000px_ms_median": float(np.median(preprocess_times) * 1000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model-dir", type=Path, default=CXR_TRIAGE_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    import onnxruntime  # type: ignore[import-untyped]

    classifier = OnnxClassifier(args.model_dir, intra_op_threads=args.threads)
    result = {
        "label": args.label,
        "threads": args.threads,
        "onnxruntime": onnxruntime.__version__,
        **measure(classifier),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
