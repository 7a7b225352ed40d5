"""AI triage benchmark: inference speed, end-to-end latency, and ingest with AI on versus off.

    .venv/bin/python bench/ai_bench.py                      # everything, shipped model, CPU
    .venv/bin/python bench/ai_bench.py --only inference     # just onnxruntime images/s and p95
    .venv/bin/python bench/ai_bench.py --providers CUDAExecutionProvider --only inference

Goals (issue 4): >= 50 images/s on 2 CPU cores, end to end within 10 s plus the stability delay,
ingest with AI on >= 90% of ingest with AI off. Prints figures and ratios; --json FILE saves them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from pydicom.uid import generate_uid

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.servers import SAMPLES, QoimaServer, free_port  # noqa: E402

from qoima.ai.models.onnx_classifier import OnnxClassifier  # noqa: E402
from qoima.ai.pipelines.chest_triage import (  # noqa: E402
    ChestTriageInput,
    Radiograph,
    run_chest_triage,
)
from qoima.ai.registry import Registry  # noqa: E402

CHEST_CR = SAMPLES / "cr_dx" / "RG1_UNCI.dcm"  # 1955x1841, 15-bit, uncompressed, 7 MB
CHEST_JPEG = SAMPLES / "cr_dx" / "SIIM_chest_CR_850819.dcm"  # 1024x1024 JPEG baseline, 125 KB
PROPOSE_FLAGS = {"1.2.840.10008.1.2.4.50": "-xy"}  # storescu: also offer JPEG baseline


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_inference(model_dir: Path, threads: int, seconds: float,
                    providers: list[str] | None) -> dict[str, Any]:
    model = OnnxClassifier(model_dir, intra_op_threads=threads)
    if providers:
        import onnxruntime

        model.session = onnxruntime.InferenceSession(str(model_dir / "model.onnx"),
                                                     providers=providers)
    crop = model.description.preprocessing.crop_px
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"model": f"{model.name} {model.version}", "threads": threads,
                           "providers": model.session.get_providers()}
    for batch_size in (1, 8):
        batch = rng.normal(0, 1, (batch_size, 1, crop, crop)).astype(np.float32)
        for _ in range(5):
            model.run(batch)
        latencies: list[float] = []
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            t0 = time.perf_counter()
            model.run(batch)
            latencies.append(time.perf_counter() - t0)
        total = sum(latencies)
        out[f"batch_{batch_size}"] = {
            "calls": len(latencies),
            "images_per_s": batch_size * len(latencies) / total,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p95_ms": percentile(latencies, 95) * 1000,
        }
    # The rest of one image's path: decode + preprocess, and the whole pipeline per study.
    for name, path in (("rg1_unci_15bit_7mb", CHEST_CR), ("siim_jpeg_1024", CHEST_JPEG)):
        ds = pydicom.dcmread(path)
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            model.input_from_dataset(ds)
            timings.append(time.perf_counter() - t0)
        out[f"preprocess_ms_{name}"] = statistics.median(timings) * 1000
    return out


def bench_pipeline(model_dir: Path, threads: int) -> dict[str, float]:
    """One study through run_chest_triage (decode, preprocess, model) with the real adapter."""
    registry = Registry.discover([model_dir], include_shipped=False, intra_op_threads=threads)
    [model] = registry.models
    adapter = registry.adapter(model)
    out = {}
    for name, path in (("rg1_unci_15bit_7mb", CHEST_CR), ("siim_jpeg_1024", CHEST_JPEG)):
        ds = pydicom.dcmread(path)
        request = ChestTriageInput(ds.StudyInstanceUID, [Radiograph(
            ds.SOPInstanceUID, ds.SeriesInstanceUID, ds)], model.applies_to)
        timings = []
        for _ in range(5):
            t0 = time.perf_counter()
            run_chest_triage(request, adapter)
            timings.append(time.perf_counter() - t0)
        out[f"pipeline_ms_{name}"] = statistics.median(timings) * 1000
    return out


def write_copies(source: Path, folder: Path, count: int, tag: str) -> list[Path]:
    """``count`` copies of a radiograph, each its own study, so each gets its own AI job."""
    ds = pydicom.dcmread(source)
    paths = []
    for index in range(count):
        ds.StudyInstanceUID = generate_uid(entropy_srcs=[tag, str(index), "study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=[tag, str(index), "series"])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[tag, str(index), "sop"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        path = folder / f"{tag}-{index:04d}.dcm"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def storescu(server: QoimaServer, paths: list[Path]) -> None:
    syntax = str(pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID)
    flags = [PROPOSE_FLAGS[syntax]] if syntax in PROPOSE_FLAGS else []
    subprocess.run(["storescu", *flags, "-aec", server.ae_title, "127.0.0.1",
                    str(server.dicom_port), *map(str, paths)], check=True, timeout=3600,
                   capture_output=True)


def start_server(folder: Path, env: dict[str, str]) -> QoimaServer:
    folder.mkdir(parents=True, exist_ok=True)
    server = QoimaServer(folder / "data", free_port(), free_port(), env=env)
    server.start(timeout_s=60)
    return server


def sr_count(client: httpx.Client, server: QoimaServer, study_instance_uid: str) -> int:
    response = client.get(f"{server.dicomweb_url}/studies/{study_instance_uid}/series",
                          params={"Modality": "SR"})
    return len(response.json()) if response.status_code == 200 and response.content else 0


def bench_end_to_end(work: Path, runs: int, stable_age_s: float,
                     source: Path) -> dict[str, Any]:
    server = start_server(work / "e2e", {"QOIMA_AI_STABLE_AGE_S": str(stable_age_s)})
    models = len(json.loads(server.qoima("ai", "list", "--json").stdout))
    files = write_copies(source, work, runs, "e2e")
    latencies = []
    try:
        with httpx.Client(timeout=10) as client:
            for path in files:
                study = str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)
                storescu(server, [path])
                received = time.perf_counter()  # storescu returns after the C-STORE response
                while sr_count(client, server, study) < models:
                    if time.perf_counter() - received > 120:
                        raise RuntimeError(f"no SR after 120 s:\n{server.log()[-3000:]}")
                    time.sleep(0.02)
                latencies.append(time.perf_counter() - received)
    finally:
        server.stop()
    beyond = [latency - stable_age_s for latency in latencies]
    return {"runs": runs, "models": models, "stable_age_s": stable_age_s,
            "source": source.name, "total_s_median": statistics.median(latencies),
            "total_s_max": max(latencies),
            "beyond_stable_age_s_median": statistics.median(beyond),
            "beyond_stable_age_s_max": max(beyond)}


def wait_for_jobs(server: QoimaServer, expected: int, timeout_s: float) -> float:
    """Seconds until ``expected`` AI jobs are finished (reading the index, not spawning CLIs:
    a Python process per poll would steal the CPU being measured)."""
    from qoima.app import build_archive
    from qoima.archive.jobs import FINAL_STATUSES, Jobs
    from qoima.config import load_settings

    archive = build_archive(load_settings(data_dir=server.data_dir), upgrade=False)
    jobs = Jobs(archive)
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < timeout_s:
            counts = jobs.counts()
            finished = sum(n for status, n in counts.items() if status in FINAL_STATUSES)
            if finished >= expected:
                return time.perf_counter() - started
            time.sleep(0.5)
    finally:
        archive.database.dispose()
    raise RuntimeError(f"AI jobs not finished within {timeout_s}s")


def bench_ingest(work: Path, count: int, rounds: int, stable_age_s: float,
                 source: Path) -> dict[str, Any]:
    """Instances/s over one association, AI off versus on (AI jobs run during the ingest)."""
    results: dict[str, list[float]] = {"off": [], "on": []}
    ai_drain_s: list[float] = []
    for round_index in range(rounds):
        for mode in ("off", "on"):
            folder = work / f"ingest-{mode}-{round_index}"
            folder.mkdir()
            files = write_copies(source, folder, count, f"ingest-{mode}-{round_index}")
            env = {"QOIMA_AI_ENABLED": "true" if mode == "on" else "false",
                   "QOIMA_AI_STABLE_AGE_S": str(stable_age_s)}
            server = start_server(folder, env)
            try:
                started = time.perf_counter()
                storescu(server, files)
                elapsed = time.perf_counter() - started
                results[mode].append(count / elapsed)
                if mode == "on":
                    models = len(json.loads(server.qoima("ai", "list", "--json").stdout))
                    ai_drain_s.append(elapsed + wait_for_jobs(server, count * models, 1800))
            finally:
                server.stop()
            shutil.rmtree(folder, ignore_errors=True)
    off = statistics.median(results["off"])
    on = statistics.median(results["on"])
    return {"instances": count, "rounds": rounds, "source": source.name,
            "stable_age_s": stable_age_s, "instances_per_s_ai_off": off,
            "instances_per_s_ai_on": on, "ratio_on_over_off": on / off,
            "all_runs": results,
            "ai_studies_per_s_overall": count / statistics.median(ai_drain_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="cxr-triage")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--providers", nargs="*", default=None,
                        help="onnxruntime providers, e.g. CUDAExecutionProvider")
    parser.add_argument("--seconds", type=float, default=10.0, help="per inference batch size")
    parser.add_argument("--e2e-runs", type=int, default=5)
    parser.add_argument("--stable-age-s", type=float, default=1.0)
    parser.add_argument("--ingest-count", type=int, default=100)
    parser.add_argument("--ingest-rounds", type=int, default=2)
    parser.add_argument("--ingest-source", type=Path, default=CHEST_JPEG)
    parser.add_argument("--only", choices=["inference", "e2e", "ingest"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    model_dir = Registry.discover().by_name(args.model).directory
    report: dict[str, Any] = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs",
                              "python": platform.python_version()}
    with tempfile.TemporaryDirectory(prefix="qoima-ai-bench-") as tmp:
        work = Path(tmp)
        if args.only in (None, "inference"):
            report["inference"] = bench_inference(model_dir, args.threads, args.seconds,
                                                  args.providers)
            report["inference"].update(bench_pipeline(model_dir, args.threads))
            print_section("inference", report["inference"])
        if args.only in (None, "e2e"):
            report["end_to_end"] = bench_end_to_end(work, args.e2e_runs, args.stable_age_s,
                                                    CHEST_CR)
            print_section("end to end (last instance received -> SR in QIDO-RS)",
                          report["end_to_end"])
        if args.only in (None, "ingest"):
            report["ingest"] = bench_ingest(work, args.ingest_count, args.ingest_rounds,
                                            args.stable_age_s, args.ingest_source)
            print_section("ingest, AI off vs on", report["ingest"])
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_section(title: str, values: dict[str, Any]) -> None:
    lines = [f"== {title}"]
    for key, value in values.items():
        if isinstance(value, dict) and "images_per_s" in value:
            lines.append(f"  {key}: {value['images_per_s']:.1f} images/s, "
                         f"p50 {value['p50_ms']:.1f} ms, p95 {value['p95_ms']:.1f} ms "
                         f"({value['calls']} calls)")
        elif isinstance(value, float):
            lines.append(f"  {key}: {value:.3f}")
        else:
            lines.append(f"  {key}: {value}")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
