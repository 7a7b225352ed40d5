"""`qoima import`, `qoima ae` and `qoima stats` against a data dir, also while serving."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.factories import make_instance
from tests.scu import find
from tests.servers import QoimaServer


def test_import_folder_and_zip_then_query_over_dimse(sqlite_server: QoimaServer,
                                                     tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(3):
        make_instance(study="imported", number=number).save_as(
            folder / f"{number}.dcm", enforce_file_format=True)
    (folder / "notes.txt").write_text("not dicom")
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "0.dcm", "dup.dcm")
        make_instance(study="zipped").save_as(tmp_path / "z.dcm", enforce_file_format=True)
        zf.write(tmp_path / "z.dcm", "z.dcm")
    result = sqlite_server.qoima("import", *sqlite_server.cli_args(), str(folder), str(archive))
    assert result.stdout.splitlines()[0] == "stored: 4, duplicates: 1, rejected: 1"
    assert "notes.txt" in result.stdout
    from pydicom.dataset import Dataset

    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    identifier.NumberOfStudyRelatedInstances = ""
    counts = sorted(int(m.NumberOfStudyRelatedInstances)
                    for m in find(sqlite_server.dicom_port, identifier))
    assert counts == [1, 3]


def test_ae_commands_while_serving(sqlite_server: QoimaServer) -> None:
    args = sqlite_server.cli_args()
    sqlite_server.qoima("ae", "add", *args, "PACS2", "127.0.0.1", "11113")
    sqlite_server.qoima("ae", "add", *args, "WS1", "127.0.0.1", "104")
    listing = sqlite_server.qoima("ae", "list", *args).stdout.splitlines()
    assert listing == ["PACS2\t127.0.0.1\t11113", "WS1\t127.0.0.1\t104"]
    sqlite_server.qoima("ae", "remove", *args, "WS1")
    assert sqlite_server.qoima("ae", "list", *args).stdout.splitlines() == [
        "PACS2\t127.0.0.1\t11113"]
    missing = sqlite_server.qoima("ae", "remove", *args, "NOPE", check=False)
    assert missing.returncode != 0
    assert "NOPE" in missing.stderr


def test_stats_counts(sqlite_server: QoimaServer, tmp_path: Path) -> None:
    make_instance(study="stats").save_as(tmp_path / "s.dcm", enforce_file_format=True)
    sqlite_server.qoima("import", *sqlite_server.cli_args(), str(tmp_path / "s.dcm"))
    out = sqlite_server.qoima("stats", *sqlite_server.cli_args()).stdout
    assert "instances: 1" in out
    assert "studies: 1" in out
