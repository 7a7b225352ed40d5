"""Inference speed of a model folder with onnxruntime and numpy only (no Qoima install needed),
for checking a machine before deploying: images/s and p50/p95 latency at batch 1 and 8.

    python bench/ai_inference_only.py src/qoima/ai/models/cxr_triage --threads 2 --cores 0,1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime


def measure(model_dir: Path, threads: int, seconds: float) -> dict[str, object]:
    description = json.loads((model_dir / "model.json").read_text())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    crop = int(description["preprocessing"]["crop_px"])
    name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    out: dict[str, object] = {"model": f"{description['name']} {description['version']}",
                              "threads": threads, "onnxruntime": onnxruntime.__version__}
    for batch_size in (1, 8):
        batch = rng.normal(0, 1, (batch_size, 1, crop, crop)).astype(np.float32)
        for _ in range(5):
            session.run(None, {name: batch})
        latencies = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            session.run(None, {name: batch})
            latencies.append(time.perf_counter() - t0)
        out[f"batch_{batch_size}"] = {
            "images_per_s": round(batch_size * len(latencies) / sum(latencies), 1),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(latencies, 95)) * 1000, 1),
            "calls": len(latencies)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cores", default="", help="pin to these CPUs, e.g. 0,1")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, {int(core) for core in args.cores.split(",")})
    result = measure(args.model_dir, args.threads, args.seconds)
    result["cpus_allowed"] = len(os.sched_getaffinity(0))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
