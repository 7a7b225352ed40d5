"""Bad input gets a failure status and a reason; nothing stored is lost; the server goes on."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, _config, build_context

from tests.dicom_compare import same_dataset
from tests.factories import make_instance, to_bytes
from tests.scu import echo, get_study, send_files
from tests.servers import QoimaServer

FAILURE_STATUSES = range(0xA000, 0xD000)
NO_CONTEXT = -2  # presentation context refused: SOP class or transfer syntax not supported


def send_raw(port: int, path: Path) -> int:
    """C-STORE a file's bytes without decoding them (pynetdicom's chunked send)."""
    meta = pydicom.filereader.read_file_meta_info(path)
    ae = AE(ae_title="BADSCU")
    ae.requested_contexts = [build_context(meta.MediaStorageSOPClassUID,
                                           meta.TransferSyntaxUID)]
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    if not assoc.is_established:
        return NO_CONTEXT
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path)
        return int(status.Status) if "Status" in status else -1
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()


@pytest.fixture
def with_reference(server: QoimaServer, tmp_path: Path) -> tuple[QoimaServer, Path]:
    path = tmp_path / "reference.dcm"
    make_instance(study="reference", patient_id="REF").save_as(path, enforce_file_format=True)
    assert send_files(server.dicom_port, [path]) == {path: 0}
    return server, path


def assert_reference_intact(server: QoimaServer, reference: Path) -> None:
    assert echo(server.dicom_port) == 0
    header = pydicom.dcmread(reference)
    [got] = get_study(server.dicom_port, header.StudyInstanceUID,
                      [(header.SOPClassUID, header.file_meta.TransferSyntaxUID)])
    assert same_dataset(header, got)


def bad_files(tmp_path: Path, reference: Path) -> dict[str, Path]:
    good = reference.read_bytes()
    out: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        out[name] = tmp_path / f"{name}.dcm"
        out[name].write_bytes(data)

    write("truncated", good[: len(good) - 60])
    header_end = good.index(b"\x08\x00\x16\x00")  # first dataset element after the meta
    write("garbage", good[:header_end] + bytes(range(256)) * 8)
    missing_study = make_instance(study="no-study")
    del missing_study.StudyInstanceUID
    write("missing-study-uid", to_bytes(missing_study))
    huge = make_instance(study="huge", rows=8, columns=8)
    huge.Rows = 65535
    huge.Columns = 65535
    write("absurd-size", to_bytes(huge))
    return out


@pytest.mark.parametrize("case", ["truncated", "garbage", "missing-study-uid", "absurd-size"])
def test_bad_instance_gets_failure_status(with_reference: tuple[QoimaServer, Path],
                                          tmp_path: Path, case: str) -> None:
    server, reference = with_reference
    path = bad_files(tmp_path, reference)[case]
    status = send_raw(server.dicom_port, path)
    assert status in FAILURE_STATUSES
    assert "refused" in server.log()
    stats = server.qoima("stats", "--json", *server.cli_args())
    assert '"instances": 1' in stats.stdout
    assert_reference_intact(server, reference)


def test_malformed_samples_are_stored_intact_or_refused(with_reference: tuple[QoimaServer, Path],
                                                        samples: Path) -> None:
    server, reference = with_reference
    outcomes: dict[str, int] = {}
    for path in sorted((samples / "malformed").glob("*.dcm")):
        try:
            meta = pydicom.filereader.read_file_meta_info(path)
        except Exception:
            continue  # no usable File Meta: a DIMSE peer could not send it; see import test
        if "MediaStorageSOPClassUID" not in meta or "TransferSyntaxUID" not in meta:
            continue
        outcomes[path.name] = send_raw(server.dicom_port, path)
        assert echo(server.dicom_port) == 0, f"server stopped answering after {path.name}"
    assert outcomes["2026-05-06-Deeply-Nested-Sequence.dcm"] in FAILURE_STATUSES
    assert outcomes["2026-05-26-oob-monochrome-46341.dcm"] in FAILURE_STATUSES
    assert outcomes["MR_truncated.dcm"] in FAILURE_STATUSES
    assert outcomes["UnknownSopClassUid.dcm"] == NO_CONTEXT
    for name, status in outcomes.items():
        assert status in (0, NO_CONTEXT) or status in FAILURE_STATUSES, name
        if status == 0:  # what was accepted comes back equal
            original = pydicom.dcmread(samples / "malformed" / name, force=True)
            syntax = pydicom.filereader.read_file_meta_info(
                samples / "malformed" / name).TransferSyntaxUID
            returned = get_study(server.dicom_port, original.StudyInstanceUID,
                                 [(original.SOPClassUID, syntax)])
            match = [ds for ds in returned if ds.SOPInstanceUID == original.SOPInstanceUID]
            assert match, name
            assert same_dataset(original, match[0]), name
    assert_reference_intact(server, reference)


def test_import_summarises_rejections(sqlite_server: QoimaServer, samples: Path) -> None:
    result = sqlite_server.qoima("import", *sqlite_server.cli_args(), str(samples / "malformed"))
    assert "rejected:" in result.stdout
    summary = result.stdout.splitlines()
    assert any("Deeply-Nested-Sequence" in line and "nested" in line for line in summary)
    assert any("oob-monochrome-65535" in line and "absurd image size" in line
               for line in summary)
    stored = int(summary[0].split("stored: ")[1].split(",")[0])
    assert stored > 0
    assert echo(sqlite_server.dicom_port) == 0


def test_same_uid_different_content_is_refused_and_original_kept(
        with_reference: tuple[QoimaServer, Path], tmp_path: Path) -> None:
    server, reference = with_reference
    changed = pydicom.dcmread(reference)
    changed.PatientName = "SOMEONE^ELSE"
    path = tmp_path / "changed.dcm"
    changed.save_as(path, enforce_file_format=True)
    assert send_files(server.dicom_port, [path])[path] in FAILURE_STATUSES
    assert send_files(server.dicom_port, [reference]) == {reference: 0}  # identical: no-op
    assert_reference_intact(server, reference)
