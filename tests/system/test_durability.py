"""Every acknowledged instance survives SIGKILL mid-burst; half-written blobs never surface."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pydicom
from pynetdicom import AE

from tests.dicom_compare import same_dataset
from tests.factories import CT_IMAGE_STORAGE, make_instance
from tests.scu import echo, get_study
from tests.servers import QoimaServer, free_port


def burst(port: int, acknowledged: list[str], stop: threading.Event) -> None:
    """Store instances (64x64, 8 KB each) until the server dies or ``stop`` is set."""
    ae = AE(ae_title="BURST")
    ae.add_requested_context(CT_IMAGE_STORAGE, "1.2.840.10008.1.2.1")
    for number in range(1, 5000):
        if stop.is_set():
            return
        assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
        if not assoc.is_established:
            return
        try:
            for inner in range(20):
                ds = make_instance(study="burst", series=f"s{number}", number=inner,
                                   rows=64, columns=64)
                status = assoc.send_c_store(ds)
                if "Status" not in status:
                    return
                if status.Status == 0:
                    acknowledged.append(str(ds.SOPInstanceUID))
        finally:
            if assoc.is_established:
                assoc.release()


def blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").glob("??/??/*") if p.is_file()]


def test_sigkill_mid_burst_keeps_every_acknowledged_instance(tmp_path: Path) -> None:
    server = QoimaServer(tmp_path / "data", free_port(), free_port())
    server.start()
    acknowledged: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(target=burst, args=(server.dicom_port, acknowledged, stop))
    thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    stop.set()
    thread.join(30)
    assert len(acknowledged) >= 150

    server.start()
    try:
        assert echo(server.dicom_port) == 0
        study_uid = make_instance(study="burst").StudyInstanceUID
        returned = {str(ds.SOPInstanceUID): ds for ds in get_study(
            server.dicom_port, study_uid, [(CT_IMAGE_STORAGE, "1.2.840.10008.1.2.1")])}
        missing = set(acknowledged) - set(returned)
        assert not missing, f"{len(missing)} acknowledged instances lost"
        for uid in acknowledged[::25]:
            series, number = _origin_of(returned[uid])
            expected = make_instance(study="burst", series=series, number=number,
                                     rows=64, columns=64)
            assert same_dataset(expected, returned[uid])
        # No orphans: every blob on disk is an indexed instance, no temp files remain.
        deadline = time.monotonic() + 30
        while "startup orphan sweep done" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = server.qoima("stats", "--json", *server.cli_args()).stdout
        assert f'"instances": {len(returned)}' in stats
        assert len(blob_files(server.data_dir)) == len(returned)
        assert not list((server.data_dir / "blobs" / "tmp").iterdir())
    finally:
        server.stop()


def _origin_of(ds: pydicom.Dataset) -> tuple[str, int]:
    for number in range(1, 5000):
        series = f"s{number}"
        if make_instance(study="burst", series=series).SeriesInstanceUID == ds.SeriesInstanceUID:
            return series, int(ds.InstanceNumber)
    raise AssertionError("unknown series")


def test_sigterm_stops_cleanly(sqlite_server: QoimaServer) -> None:
    assert echo(sqlite_server.dicom_port) == 0
    started = time.monotonic()
    # uvicorn re-raises the signal after its graceful shutdown, so the exit status says SIGTERM
    assert sqlite_server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert time.monotonic() - started < 15
    assert "Qoima stopped" in sqlite_server.log()


def test_ready_for_c_echo_within_15_seconds(tmp_path: Path) -> None:
    server = QoimaServer(tmp_path / "fresh", free_port(), free_port())
    started = time.monotonic()
    server.start(timeout_s=15)
    try:
        assert echo(server.dicom_port) == 0
        assert time.monotonic() - started < 15
    finally:
        server.stop()
