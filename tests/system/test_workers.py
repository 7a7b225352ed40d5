"""``qoima serve --workers 2``: two processes on the same DIMSE and HTTP ports share the load,
store into one archive, stop together on SIGTERM and never outlive a killed server."""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from tests.factories import make_instance, to_bytes
from tests.scu import echo, find
from tests.servers import QoimaServer, free_port


def _worker_pids(server: QoimaServer) -> list[int]:
    match = re.search(r"started \d+ worker processes: ([\d, ]+)", server.log())
    assert match, server.log()
    return [int(pid) for pid in match.group(1).split(",")]


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


def _store_lines(server: QoimaServer, ae_title: str) -> list[str]:
    """The log lines of ended associations from ``ae_title`` (any when empty) that stored."""
    return [line for line in server.log().splitlines()
            if f"C-STORE association from {ae_title}" in line and " 0 stored" not in line]


def _wait_until(predicate: object, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _workers_ready(server: QoimaServer, count: int) -> bool:
    return server.log().count("Qoima ready") >= count


def _storescu(port: int, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["storescu", "-aec", "QOIMA", "+sd", "-nh", "127.0.0.1", str(port),
                           str(folder)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TCP_NODELAY": "1"})


def _stow(url: str, ds: Dataset) -> int:
    boundary = "qoima-test-boundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + to_bytes(ds) + f"\r\n--{boundary}--\r\n".encode())
    response = httpx.post(f"{url}/studies", content=body, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    return response.status_code


def test_two_workers_share_the_ports_and_the_archive(tmp_path: Path) -> None:
    server = QoimaServer(tmp_path / "data", free_port(), free_port(),
                         extra_args=["--workers", "2"], env={"QOIMA_AI_ENABLED": "false"})
    server.start()
    try:
        assert _wait_until(lambda: _workers_ready(server, 2)), server.log()
        folders = []
        for association in range(8):
            folder = tmp_path / f"send{association}"
            folder.mkdir()
            for number in range(5):
                ds = make_instance(study="workers", series=f"dimse{association}", number=number)
                ds.save_as(folder / f"{number}.dcm", enforce_file_format=True)
            folders.append(folder)
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda f: _storescu(server.dicom_port, f), folders))
            statuses = list(pool.map(lambda n: _stow(server.dicomweb_url, make_instance(
                study="workers", series="stow", number=n)), range(8)))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert statuses == [200] * 8

        # every instance is in the one index, whichever process stored it
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = make_instance(study="workers").StudyInstanceUID
        identifier.SeriesInstanceUID = ""
        identifier.NumberOfSeriesRelatedInstances = ""
        series = find(server.dicom_port, identifier)
        assert sorted(int(s.NumberOfSeriesRelatedInstances) for s in series) == [5] * 8 + [8]
        assert _wait_until(lambda: len(_store_lines(server, "")) == 8), server.log()
        pids = {line.split()[2] for line in server.log().splitlines()
                if "C-STORE association from" in line or "STOW-RS:" in line}
        assert len(pids) == 2, "both processes took associations or requests"
    finally:
        workers = _worker_pids(server)
        assert server.stop() in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert _wait_until(lambda: not any(_is_alive(pid) for pid in workers))


def test_associations_open_at_once_are_spread_evenly(tmp_path: Path) -> None:
    """Four associations held open together land two on each process: a process already
    serving one lets an idle one accept first (SO_REUSEPORT's hash often gave 3-1 or 4-0)."""
    server = QoimaServer(tmp_path / "data", free_port(), free_port(),
                         extra_args=["--workers", "2"], env={"QOIMA_AI_ENABLED": "false"})
    server.start()
    try:
        assert _wait_until(lambda: _workers_ready(server, 2)), server.log()
        for attempt in range(3):
            ae = AE(ae_title="SPREAD")
            ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
            associations = [ae.associate("127.0.0.1", server.dicom_port, ae_title="QOIMA")
                            for _ in range(4)]
            instances = [make_instance(study="spread", series=f"a{attempt}", number=n)
                         for n in range(4)]
            try:
                assert all(a.is_established for a in associations)
                for association, ds in zip(associations, instances, strict=True):
                    assert association.send_c_store(ds).Status == 0
            finally:
                for association in associations:
                    association.release()
            # each process logs one line per association when it ends
            assert _wait_until(lambda n=attempt: len(_store_lines(server, "SPREAD")) == 4 * (n + 1))
            pids = [line.split()[2] for line in _store_lines(server, "SPREAD")[-4:]]
            assert sorted(Counter(pids).values()) == [2, 2], (attempt, pids)
    finally:
        server.stop()


def test_http_answers_are_not_held_back_by_nagle(tmp_path: Path) -> None:
    """With workers, HTTP connections are accepted from a socket the first process bound;
    asyncio turns Nagle's algorithm off on them only if that socket's protocol reads as TCP.
    Without it every small answer on a kept-alive connection waits for the client's delayed
    ACK (about 40 ms); with it a health check takes a few ms."""
    server = QoimaServer(tmp_path / "data", free_port(), free_port(),
                         extra_args=["--workers", "2"], env={"QOIMA_AI_ENABLED": "false"})
    server.start()
    try:
        assert _wait_until(lambda: _workers_ready(server, 2)), server.log()
        for _ in range(4):  # connections land on either process
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=10)
            took = []
            for _ in range(15):
                started = time.perf_counter()
                connection.request("GET", "/dicomweb/studies?limit=1")
                response = connection.getresponse()
                assert response.status == 200
                response.read()
                took.append(time.perf_counter() - started)
            connection.close()
            assert sorted(took)[len(took) // 2] < 0.030, took
    finally:
        server.stop()


def test_workers_die_with_a_killed_server_and_a_restart_takes_the_ports(tmp_path: Path
                                                                        ) -> None:
    server = QoimaServer(tmp_path / "data", free_port(), free_port(),
                         extra_args=["--workers", "2"], env={"QOIMA_AI_ENABLED": "false"})
    server.start()
    assert _wait_until(lambda: _workers_ready(server, 2)), server.log()
    assert _stow(server.dicomweb_url, make_instance(study="kill")) == 200
    workers = _worker_pids(server)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert _wait_until(lambda: not any(_is_alive(pid) for pid in workers), 10)

    server.start()  # same ports: nothing left holds them
    try:
        assert echo(server.dicom_port) == 0
        studies = httpx.get(f"{server.dicomweb_url}/studies", timeout=10).json()
        assert [s["0020000D"]["Value"][0] for s in studies] == [
            make_instance(study="kill").StudyInstanceUID]
    finally:
        server.stop()
