"""Qoima's DIMSE SCP against DCMTK's echoscu, storescu, findscu, getscu and movescu."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import time
from pathlib import Path

import blake3
import pydicom
import pytest

from tests.conftest import require_tool
from tests.dicom_compare import same_dataset
from tests.factories import make_instance
from tests.scu import get_study, send_files
from tests.servers import QoimaServer, free_port


def dcmtk(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool(args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout_s, env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})


def test_echoscu_gets_success(server: QoimaServer) -> None:
    result = dcmtk("echoscu", "-aec", "QOIMA", "127.0.0.1", str(server.dicom_port))
    assert result.returncode == 0, result.stderr


def store_folder(server: QoimaServer, *paths: Path) -> subprocess.CompletedProcess[str]:
    return dcmtk("storescu", "-R", "-nh", "+sd", "+r", "-aec", "QOIMA", "127.0.0.1",
                 str(server.dicom_port), *map(str, paths), timeout_s=120)


def test_storescu_then_getscu_returns_equal_datasets(server: QoimaServer, samples: Path,
                                                     tmp_path: Path) -> None:
    folders = [samples / name for name in ("ct", "ct_series_3slice", "mr_series_adc", "other")]
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
            for folder in folders for p in folder.glob("*.dcm")}
    result = store_folder(server, *sent.values())
    # Debian's storescu cannot send some encapsulated syntaxes as they are (it proposes only
    # uncompressed for them and has no JPEG 2000 codec); those go with pynetdicom instead.
    failed = [Path(line.split("file: ", 1)[1].rstrip(":")) for line in result.stderr.splitlines()
              if "Store Failed, file:" in line]
    assert len(failed) < len(sent) / 2, result.stderr
    statuses = send_files(server.dicom_port, failed)
    assert set(statuses.values()) <= {0}
    studies = {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
               for p in sent.values()}
    out = tmp_path / "got"
    out.mkdir()
    for study_uid in studies:
        result = dcmtk("getscu", "-aec", "QOIMA", "-S", "-k", "QueryRetrieveLevel=STUDY",
                       "-k", f"StudyInstanceUID={study_uid}", "-od", str(out), "127.0.0.1",
                       str(server.dicom_port))
        assert result.returncode == 0, result.stderr
    received = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
                for p in out.iterdir()}
    # getscu proposes uncompressed syntaxes only: Qoima decompresses on the way out, except
    # where no codec can (the JPEG Extended sample has corrupt pixel data): fetch that one
    # with a pynetdicom SCU that accepts it as stored.
    for uid in set(sent) - set(received):
        header = pydicom.dcmread(sent[uid], stop_before_pixels=True)
        assert header.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.51", sent[uid]
        for ds in get_study(server.dicom_port, header.StudyInstanceUID,
                            [(header.SOPClassUID, header.file_meta.TransferSyntaxUID)]):
            ds.save_as(out / f"pynetdicom-{ds.SOPInstanceUID}", enforce_file_format=True)
    received = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p
                for p in out.iterdir()}
    assert set(received) == set(sent)
    for uid, path in sent.items():
        original = pydicom.dcmread(path)
        got = pydicom.dcmread(received[uid])
        if original.file_meta.TransferSyntaxUID.is_compressed and \
                not got.file_meta.TransferSyntaxUID.is_compressed:
            original.decompress(generate_instance_uid=False)  # transcoded for the peer
        assert same_dataset(original, got), path.name


def test_the_index_keeps_a_hash_of_each_stored_file_and_finds_duplicates_by_it(
        sqlite_server: QoimaServer, samples: Path, tmp_path: Path) -> None:
    """The index keeps the BLAKE3 hash of the bytes stored; sending the same files again
    stores nothing new, also where the index has a SHA-256 hash (a row from before index
    version 0006), and a changed file under a stored UID is still refused."""
    paths = [samples / name for name in (
        "ct/CT_small.dcm", "ct/693_UNCI.dcm", "ct/eCT_Supplemental.dcm", "cr_dx/RG1_UNCI.dcm",
        "ct_series_3slice/01.dcm", "ct_series_3slice/02.dcm", "ct_series_3slice/03.dcm")]
    result = store_folder(sqlite_server, *paths)
    assert "Store Failed" not in result.stderr, result.stderr
    index = sqlite_server.data_dir / "index.sqlite"
    with sqlite3.connect(index) as db:
        kept = dict(db.execute("SELECT blob_key, content_hash FROM instance"))
    assert len(kept) == len(paths)
    stored = {}
    for key, content_hash in kept.items():
        [blob] = (sqlite_server.data_dir / "blobs").glob(f"*/*/{key}")
        stored[key] = blob.read_bytes()
        assert content_hash == f"blake3:{blake3.blake3(stored[key]).hexdigest()}", blob
    for resend in (1, 2):
        if resend == 2:  # as the migration to 0006 left the rows stored before it
            with sqlite3.connect(index) as db:
                db.executemany("UPDATE instance SET content_hash = ? WHERE blob_key = ?", [
                    (f"sha256:{hashlib.sha256(data).hexdigest()}", key)
                    for key, data in stored.items()])
        assert "Store Failed" not in store_folder(sqlite_server, *paths).stderr
        deadline = time.monotonic() + 10  # logged as the server sees the connection close
        while sqlite_server.log().count("0 stored, 7 duplicates") < resend:
            assert time.monotonic() < deadline, sqlite_server.log()
            time.sleep(0.1)
    changed = pydicom.dcmread(paths[1])
    changed.PatientName = "SOMEONE^ELSE"
    changed.save_as(tmp_path / "changed.dcm", enforce_file_format=True)
    assert send_files(sqlite_server.dicom_port, [tmp_path / "changed.dcm"]) == {
        tmp_path / "changed.dcm": 0xC211}


def test_findscu_matches_wildcards_and_ranges(server: QoimaServer, tmp_path: Path) -> None:
    files = []
    for index, (name, date) in enumerate([("SMITH^ANNA", "20240110"), ("SMITH^BOB", "20240320"),
                                          ("JONES^CAROL", "20240115")]):
        path = tmp_path / f"{index}.dcm"
        make_instance(patient_id=f"P{index}", patient_name=name, study=f"s{index}",
                      study_date=date).save_as(path, enforce_file_format=True)
        files.append(path)
    store_folder(server, *files)

    def names(*keys: str) -> list[str]:
        args = ["findscu", "-aec", "QOIMA", "-S", "-k", "QueryRetrieveLevel=STUDY",
                "-k", "PatientName", "-k", "StudyInstanceUID"]
        for key in keys:
            args += ["-k", key]
        result = dcmtk(*args, "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, result.stderr
        return sorted(line.split("[")[1].split("]")[0].strip() for line in
                      result.stderr.splitlines() if "PatientName" in line and "[" in line)

    assert names("PatientName=smith*") == ["SMITH^ANNA", "SMITH^BOB"]
    assert names("StudyDate=20240101-20240131") == ["JONES^CAROL", "SMITH^ANNA"]
    assert names("PatientName=SMITH^B?B") == ["SMITH^BOB"]
    assert names("PatientName=NOBODY") == []


def test_findscu_image_level_returns_binary_and_unicode_keys(server: QoimaServer,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "image.dcm"
    instance = make_instance(patient_name="Әбілқайыр^Айгүл", charset="ISO_IR 192", rows=12,
                             columns=10, study="image-level")
    instance.save_as(path, enforce_file_format=True)
    store_folder(server, path)
    out = tmp_path / "responses"
    out.mkdir()
    for syntax in ("-xi", "-xe"):  # implicit and explicit VR little endian
        for old in out.iterdir():
            old.unlink()
        result = dcmtk("findscu", "-aec", "QOIMA", "-S", syntax, "-X", "-od", str(out),
                       "-k", "QueryRetrieveLevel=IMAGE",
                       "-k", f"StudyInstanceUID={instance.StudyInstanceUID}",
                       "-k", f"SeriesInstanceUID={instance.SeriesInstanceUID}",
                       "-k", "SOPInstanceUID", "-k", "Rows", "-k", "Columns",
                       "-k", "PatientName", "-k", "InstanceNumber", "-k", "ReferencedImageSequence",
                       "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, result.stderr
        [response_file] = list(out.iterdir())
        response = pydicom.dcmread(response_file)
        assert (response.Rows, response.Columns) == (12, 10)
        assert str(response.PatientName) == "Әбілқайыр^Айгүл"
        assert response.SpecificCharacterSet == "ISO_IR 192"
        assert response.SOPInstanceUID == instance.SOPInstanceUID
        assert response.InstanceNumber == instance.InstanceNumber
        assert response.ReferencedImageSequence == []


def test_movescu_sends_to_configured_destination(server: QoimaServer, tmp_path: Path) -> None:
    path = tmp_path / "one.dcm"
    make_instance(study="move-study").save_as(path, enforce_file_format=True)
    store_folder(server, path)
    destination_port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    storescp = subprocess.Popen([require_tool("storescp"), "-aet", "DEST", "-od", str(received),
                                 str(destination_port)], stderr=subprocess.PIPE)
    try:
        server.qoima("ae", "add", *server.cli_args(), "DEST", "127.0.0.1",
                     str(destination_port))
        study_uid = pydicom.dcmread(path).StudyInstanceUID
        result = dcmtk("movescu", "-aec", "QOIMA", "-aem", "DEST", "-S",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                       "127.0.0.1", str(server.dicom_port))
        assert result.returncode == 0, result.stderr
    finally:
        storescp.terminate()
        storescp.wait(10)
    files = list(received.iterdir())
    assert len(files) == 1
    assert same_dataset(path, files[0])


def test_movescu_to_unknown_destination_is_refused_with_a801(server: QoimaServer,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "one.dcm"
    make_instance(study="unknown-dest").save_as(path, enforce_file_format=True)
    store_folder(server, path)
    result = dcmtk("movescu", "-v", "-aec", "QOIMA", "-aem", "NOWHERE", "-S",
                   "-k", "QueryRetrieveLevel=STUDY",
                   "-k", f"StudyInstanceUID={pydicom.dcmread(path).StudyInstanceUID}",
                   "127.0.0.1", str(server.dicom_port))
    assert "a801" in (result.stdout + result.stderr).lower() or \
        "MoveDestinationUnknown" in result.stdout + result.stderr


@pytest.mark.parametrize("level", ["PATIENT", "STUDY"])
def test_findscu_patient_root(server: QoimaServer, tmp_path: Path, level: str) -> None:
    path = tmp_path / "p.dcm"
    make_instance(patient_id="ROOT1", patient_name="ROOT^PAT").save_as(
        path, enforce_file_format=True)
    store_folder(server, path)
    result = dcmtk("findscu", "-aec", "QOIMA", "-P", "-k", f"QueryRetrieveLevel={level}",
                   "-k", "PatientID=ROOT1", "-k", "PatientName", "127.0.0.1",
                   str(server.dicom_port))
    assert result.returncode == 0
    assert "ROOT^PAT" in result.stderr
