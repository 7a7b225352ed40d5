"""PS3.4 matching rules and character sets through a real C-FIND SCU (pynetdicom)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from tests.factories import make_instance, uid_for
from tests.scu import find, send_files
from tests.servers import QoimaServer

PATIENTS = [
    # (id, name, charset, study date, time, modality, accession)
    ("P1", "Иванов^Иван", "ISO_IR 144", "20240105", "081500", "CR", "AST-1"),
    ("P2", "ИВАНОВА^Анна", "ISO_IR 192", "20240212", "141000", "DX", "AST-2"),
    ("P3", "Әбдіқадыров^Нұрлан", "ISO_IR 192", "20240301", "093000", "CT", "ATY-3"),
    ("P4", "өмірбек^Ұлжан", "ISO_IR 192", "20231230", "235900", "MG", "ATY-4"),
    ("P5", "SMITH^JOHN", None, "20240105", "120000", "CR", "ALA_5%"),
]


@pytest.fixture(scope="module")
def loaded(module_server: QoimaServer, tmp_path_factory: pytest.TempPathFactory) -> QoimaServer:
    server = module_server
    tmp_path = tmp_path_factory.mktemp("patients")
    paths = []
    for pid, name, charset, date, time, modality, accession in PATIENTS:
        path = tmp_path / f"{pid}.dcm"
        make_instance(patient_id=pid, patient_name=name, charset=charset, study=pid,
                      study_date=date, study_time=time, modality=modality,
                      accession=accession).save_as(path, enforce_file_format=True)
        paths.append(path)
    assert set(send_files(server.dicom_port, paths).values()) == {0}
    return server


def query(server: QoimaServer, level: str = "STUDY", charset: str | None = "ISO_IR 192",
          **keys: str) -> list[Dataset]:
    identifier = Dataset()
    if charset:
        identifier.SpecificCharacterSet = charset
    identifier.QueryRetrieveLevel = level
    identifier.PatientID = ""
    identifier.PatientName = ""
    identifier.StudyInstanceUID = ""
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return find(server.dicom_port, identifier)


def ids(matches: list[Dataset]) -> list[str]:
    return sorted(str(m.PatientID) for m in matches)


def test_universal_matching_returns_everything(loaded: QoimaServer) -> None:
    assert ids(query(loaded)) == ["P1", "P2", "P3", "P4", "P5"]


def test_cyrillic_names_match_case_insensitively(loaded: QoimaServer) -> None:
    assert ids(query(loaded, PatientName="иванов*")) == ["P1", "P2"]
    assert ids(query(loaded, PatientName="ИВАНОВ^ИВАН")) == ["P1"]


def test_kazakh_letters_match_by_character(loaded: QoimaServer) -> None:
    assert ids(query(loaded, PatientName="ӘБДІҚАДЫРОВ*")) == ["P3"]
    assert ids(query(loaded, PatientName="Өмірбек^ұлжан")) == ["P4"]
    assert ids(query(loaded, PatientName="?мірбек*")) == ["P4"]


def test_names_come_back_in_their_own_letters(loaded: QoimaServer) -> None:
    [match] = query(loaded, PatientID="P3")
    assert str(match.PatientName) == "Әбдіқадыров^Нұрлан"
    [match] = query(loaded, PatientID="P1")
    assert str(match.PatientName) == "Иванов^Иван"


def test_identifier_in_iso_ir_144_matches_cyrillic(loaded: QoimaServer) -> None:
    assert ids(query(loaded, charset="ISO_IR 144", PatientName="Иванов^Иван")) == ["P1"]


def test_date_ranges(loaded: QoimaServer) -> None:
    assert ids(query(loaded, StudyDate="20240101-20240131")) == ["P1", "P5"]
    assert ids(query(loaded, StudyDate="-20231231")) == ["P4"]
    assert ids(query(loaded, StudyDate="20240301-")) == ["P3"]
    assert ids(query(loaded, StudyDate="20240105")) == ["P1", "P5"]


def test_time_range(loaded: QoimaServer) -> None:
    assert ids(query(loaded, StudyTime="0800-1000")) == ["P1", "P3"]


def test_uid_list_matching(loaded: QoimaServer) -> None:
    uids = [uid_for("P2"), uid_for("P4")]
    assert ids(query(loaded, StudyInstanceUID="\\".join(uids))) == ["P2", "P4"]


def test_single_value_and_wildcards_are_literal_for_sql_characters(loaded: QoimaServer) -> None:
    assert ids(query(loaded, AccessionNumber="ALA_5%")) == ["P5"]
    assert ids(query(loaded, AccessionNumber="ALA_*")) == ["P5"]
    assert ids(query(loaded, AccessionNumber="AST?1")) == ["P1"]
    assert ids(query(loaded, AccessionNumber="%")) == []


def test_modalities_in_study(loaded: QoimaServer) -> None:
    assert ids(query(loaded, ModalitiesInStudy="CR")) == ["P1", "P5"]
    assert ids(query(loaded, ModalitiesInStudy="CT\\MG")) == ["P3", "P4"]


def test_series_and_image_levels(loaded: QoimaServer) -> None:
    series = query(loaded, level="SERIES", StudyInstanceUID=uid_for("P3"),
                   SeriesInstanceUID="", Modality="")
    assert [str(s.Modality) for s in series] == ["CT"]
    images = query(loaded, level="IMAGE", StudyInstanceUID=uid_for("P3"),
                   SeriesInstanceUID=uid_for("P3", "series-1"), SOPInstanceUID="")
    assert [str(i.SOPInstanceUID) for i in images] == [uid_for("P3", "series-1", 1)]


def test_patient_root_patient_level_counts(loaded: QoimaServer) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "P1"
    identifier.NumberOfPatientRelatedStudies = ""
    [match] = find(loaded.dicom_port, identifier, model="patient")
    assert int(match.NumberOfPatientRelatedStudies) == 1


def test_invalid_date_is_refused_with_a_failure_status(loaded: QoimaServer) -> None:
    with pytest.raises(RuntimeError, match="0xA900"):
        query(loaded, StudyDate="2024-13-45x")


def test_name_change_matches_each_study_by_its_own_name(server: QoimaServer,
                                                       tmp_path_factory: pytest.TempPathFactory
                                                       ) -> None:
    folder = tmp_path_factory.mktemp("renamed")
    before, after = folder / "before.dcm", folder / "after.dcm"
    make_instance(patient_id="P9", patient_name="АЛИЕВА^Камила", charset="ISO_IR 192",
                  study="maiden").save_as(before, enforce_file_format=True)
    make_instance(patient_id="P9", patient_name="ИСКАКОВА^Камила", charset="ISO_IR 192",
                  study="married").save_as(after, enforce_file_format=True)
    assert set(send_files(server.dicom_port, [before, after]).values()) == {0}
    [old] = query(server, PatientName="алиева*")
    assert old.StudyInstanceUID == uid_for("maiden")
    [new] = query(server, PatientName="ИСКАКОВА*")
    assert new.StudyInstanceUID == uid_for("married")
    assert len(query(server, PatientID="P9")) == 2
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "PATIENT"
    identifier.PatientID = "P9"
    identifier.PatientName = ""
    [patient] = find(server.dicom_port, identifier, model="patient")
    assert str(patient.PatientName) == "ИСКАКОВА^Камила"  # the newest study's
