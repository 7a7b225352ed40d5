"""End to end: ``qoima serve`` with AI on; storescu sends a chest radiograph, the SR appears in
QIDO-RS; broken and unsupported inputs end as failed or skipped jobs and the server keeps going."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import (
    JPEG2000,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)

from tests.ai.conftest import CHEST_CR, EXTREMITY_CR, chest_bytes
from tests.ai.sr_content import finding_codes, probabilities, texts
from tests.conftest import require_tool
from tests.servers import QoimaServer, free_port, running_server

SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
TIMEOUT_S = 90.0


@pytest.fixture
def ai_server(tmp_path: Path, tiny_models_dir: Path,
              database_url: str | None) -> Iterator[QoimaServer]:
    config = tmp_path / "qoima.toml"
    config.write_text(f'ai_models_dir = "{tiny_models_dir}"\n')
    env = {"QOIMA_AI_STABLE_AGE_S": "1", "QOIMA_CONFIG": str(config)}
    with running_server(tmp_path / "data", database_url=database_url, env=env) as server:
        yield server


# storescu proposes only uncompressed transfer syntaxes unless told which compressed one to add.
PROPOSE_FLAGS = {RLELossless: "-xr", JPEGBaseline8Bit: "-xy", JPEG2000: "-xw",
                 JPEG2000Lossless: "-xv", JPEGLosslessSV1: "-xs"}


def _storescu(server: QoimaServer, path: Path) -> None:
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    flags = [PROPOSE_FLAGS[syntax]] if syntax in PROPOSE_FLAGS else []
    subprocess.run([require_tool("storescu"), "-R", *flags, "-aec", server.ae_title,
                    "127.0.0.1", str(server.dicom_port), str(path)], check=True, timeout=60,
                   capture_output=True)


def _installed_models(server: QoimaServer) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = json.loads(server.qoima("ai", "list", "--json").stdout)
    return models


def _jobs(server: QoimaServer, study_instance_uid: str) -> list[dict[str, Any]]:
    output = server.qoima("ai", "jobs", "--json", "--study", study_instance_uid,
                          *server.cli_args()).stdout
    jobs: list[dict[str, Any]] = json.loads(output)
    return jobs


def _store_chest_and_wait_for_jobs(server: QoimaServer, study_instance_uid: str) -> int:
    """C-STORE the chest radiograph and wait until every installed model has its job;
    returns the number of models."""
    models = len(_installed_models(server))
    _storescu(server, CHEST_CR)
    deadline = time.monotonic() + TIMEOUT_S
    while len(_jobs(server, study_instance_uid)) < models:
        assert time.monotonic() < deadline, "jobs were not scheduled"
        time.sleep(0.25)
    return models


def _wait_for_sr_series(client: DICOMwebClient, study_instance_uid: str,
                        count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        series = client.search_for_series(study_instance_uid,
                                          search_filters={"Modality": "SR"})
        if len(series) >= count:
            return series
        time.sleep(0.25)
    raise AssertionError(f"no AI SR for study {study_instance_uid} within {TIMEOUT_S}s")


def test_chest_radiograph_gets_an_sr(ai_server: QoimaServer) -> None:
    study_instance_uid = pydicom.dcmread(CHEST_CR, stop_before_pixels=True).StudyInstanceUID
    models = {(m["name"], m["version"]) for m in _installed_models(ai_server)}
    _storescu(ai_server, CHEST_CR)
    client = DICOMwebClient(ai_server.dicomweb_url)
    sr_series = _wait_for_sr_series(client, study_instance_uid, len(models))
    reported = set()
    for series in sr_series:
        series_instance_uid = series["0020000E"]["Value"][0]
        [instance] = client.search_for_instances(study_instance_uid, series_instance_uid)
        assert instance["00080016"]["Value"][0] == SR_SOP_CLASS
        sr = client.retrieve_instance(study_instance_uid, series_instance_uid,
                                      instance["00080018"]["Value"][0])
        assert ("SCT", "263654008") in finding_codes(sr)  # Abnormal
        assert {("SCT", "56717001"), ("SCT", "233604007")} <= finding_codes(sr)
        values = probabilities(sr)
        assert values
        assert all(0.0 <= value <= 1.0 for value in values)
        [name] = texts(sr, "Algorithm Name")
        [version] = texts(sr, "Algorithm Version")
        reported.add((name, version))
    assert reported == models


def test_heatmap_series_and_priority_are_written(ai_server: QoimaServer) -> None:
    study_instance_uid = pydicom.dcmread(CHEST_CR, stop_before_pixels=True).StudyInstanceUID
    models = _installed_models(ai_server)
    _storescu(ai_server, CHEST_CR)
    client = DICOMwebClient(ai_server.dicomweb_url)
    _wait_for_sr_series(client, study_instance_uid, len(models))
    heatmaps = client.search_for_series(study_instance_uid, search_filters={"Modality": "OT"})
    assert len(heatmaps) == len(models)
    jobs = _jobs(ai_server, study_instance_uid)
    assert {job["status"] for job in jobs} == {"done"}
    assert all(0.0 <= job["result"]["priority"] <= 1.0 for job in jobs)


def test_unsupported_and_broken_inputs_end_with_a_reason(ai_server: QoimaServer,
                                                         tmp_path: Path) -> None:
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(chest_bytes("serve-broken", corrupt_pixels=True))
    cases = {EXTREMITY_CR: ("skipped", "body part EXTREMITY"),
             broken: ("failed", "cannot decode pixel data")}
    for path in cases:
        _storescu(ai_server, path)
    deadline = time.monotonic() + TIMEOUT_S
    for path, (status, reason) in cases.items():
        study_instance_uid = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
        while True:
            jobs = _jobs(ai_server, study_instance_uid)
            if jobs and all(job["status"] in ("done", "skipped", "failed") for job in jobs):
                break
            assert time.monotonic() < deadline, f"jobs for {path.name} did not finish"
            time.sleep(0.25)
        assert {job["status"] for job in jobs} == {status}
        assert all(reason in job["error"] for job in jobs)
    assert httpx.get(f"{ai_server.url}/healthz", timeout=5).status_code == 200
    echo = subprocess.run([require_tool("echoscu"), "-aec", ai_server.ae_title, "127.0.0.1",
                           str(ai_server.dicom_port)], timeout=30, capture_output=True)
    assert echo.returncode == 0


@pytest.fixture
def redis_server_and_worker(tmp_path: Path, tiny_models_dir: Path, database_url: str | None
                            ) -> Iterator[QoimaServer]:
    """``qoima serve`` with no AI workers of its own, and one ``qoima ai worker`` process,
    sharing the index, the blobs and a Redis queue (named for this test only)."""
    config = tmp_path / "qoima.toml"
    config.write_text(f'ai_models_dir = "{tiny_models_dir}"\n'
                      f'ai_queue_name = "qoima-test-{uuid.uuid4().hex[:12]}"\n')
    env = {"QOIMA_AI_STABLE_AGE_S": "1", "QOIMA_CONFIG": str(config),
           "QOIMA_AI_QUEUE_URL": "redis://127.0.0.1:6379/0", "QOIMA_AI_WORKERS": "0"}
    with running_server(tmp_path / "data", database_url=database_url, env=env) as server:
        log = (tmp_path / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "qoima", "ai", "worker", "--workers", "1",
             *server.cli_args()], env={**os.environ, **env}, stdout=log,
            stderr=subprocess.STDOUT)
        try:
            yield server
        finally:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()


@pytest.mark.timeout(240)
def test_remote_worker_over_redis_writes_the_sr(redis_server_and_worker: QoimaServer) -> None:
    server = redis_server_and_worker
    study_instance_uid = pydicom.dcmread(CHEST_CR, stop_before_pixels=True).StudyInstanceUID
    models = _installed_models(server)
    _storescu(server, CHEST_CR)
    _wait_for_sr_series(DICOMwebClient(server.dicomweb_url), study_instance_uid, len(models))
    assert {job["status"] for job in _jobs(server, study_instance_uid)} == {"done"}
    assert " done: study " not in server.log()  # the remote worker did it, not serve


@pytest.mark.timeout(240)
def test_jobs_survive_a_restart_and_a_lost_queue(tmp_path: Path, tiny_models_dir: Path) -> None:
    """Jobs written while no worker ran are found in the index after a restart, even when the
    queue lost its messages (the job row, not the queue, is the truth)."""
    config = tmp_path / "qoima.toml"
    config.write_text(f'ai_models_dir = "{tiny_models_dir}"\n')
    env = {"QOIMA_AI_STABLE_AGE_S": "1", "QOIMA_CONFIG": str(config), "QOIMA_AI_WORKERS": "0"}
    study_instance_uid = pydicom.dcmread(CHEST_CR, stop_before_pixels=True).StudyInstanceUID
    with running_server(tmp_path / "data", env=env) as server:
        models = _store_chest_and_wait_for_jobs(server, study_instance_uid)
    assert {job["status"] for job in _jobs(server, study_instance_uid)} == {"pending"}
    queue_file = tmp_path / "data" / "ai-queue.sqlite"
    assert queue_file.is_file()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{queue_file}{suffix}").unlink(missing_ok=True)
    with running_server(tmp_path / "data", env={**env, "QOIMA_AI_WORKERS": "1"}) as server:
        _wait_for_sr_series(DICOMwebClient(server.dicomweb_url), study_instance_uid, models)
        assert {job["status"] for job in _jobs(server, study_instance_uid)} == {"done"}


def test_ingest_goes_on_when_the_queue_is_down(tmp_path: Path, tiny_models_dir: Path) -> None:
    """Ingest never waits for AI: with the Redis queue unreachable, C-STORE still succeeds and
    the job is kept in the index (pending) for when the queue is back."""
    config = tmp_path / "qoima.toml"
    config.write_text(f'ai_models_dir = "{tiny_models_dir}"\n')
    env = {"QOIMA_AI_STABLE_AGE_S": "1", "QOIMA_CONFIG": str(config),
           "QOIMA_AI_QUEUE_URL": f"redis://127.0.0.1:{free_port()}/0"}
    study_instance_uid = pydicom.dcmread(CHEST_CR, stop_before_pixels=True).StudyInstanceUID
    with running_server(tmp_path / "data", env=env) as server:
        _store_chest_and_wait_for_jobs(server, study_instance_uid)
        assert {job["status"] for job in _jobs(server, study_instance_uid)} == {"pending"}
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
