"""A page (limit/offset) holds exactly the rows of the full, ordered answer at its place, on
SQLite and PostgreSQL, whether its ids come from the level's table alone or from the joins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from qoima.app import build_archive, configure_libraries
from qoima.archive import Archive
from qoima.config import load_settings
from qoima.dicom.attributes import Level
from qoima.dicom.query import Query, ReadScope, parse_condition
from tests.factories import make_instance, to_bytes


@pytest.fixture
def archive(tmp_path: Path, database_url: str | None) -> Iterator[Archive]:
    configure_libraries()
    built = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    for number in range(24):  # studies stored out of date order, three patients
        for series in ("ct", "mr"):
            built.store_instance(to_bytes(make_instance(
                patient_id=f"P{number % 3}", study=f"study{number}", series=series,
                modality=series.upper(), study_date=f"202401{(number * 7) % 28 + 1:02d}",
                institution=f"Clinic {number % 2}")), "test")
    yield built
    built.database.dispose()


@pytest.mark.parametrize(("level", "keys"), [
    (Level.STUDY, {}),
    (Level.STUDY, {"StudyDate": "20240105-20240120"}),  # the study table alone
    (Level.STUDY, {"PatientID": "P1"}),  # a parent's column: the joins
    (Level.STUDY, {"PatientID": "P2", "StudyDate": "20240101-20240115"}),
    (Level.SERIES, {"Modality": "MR"}),
    (Level.SERIES, {"StudyDate": "20240110-20240128", "Modality": "CT"}),
    (Level.PATIENT, {"PatientID": "P*"}),
])
def test_pages_are_slices_of_the_full_answer(archive: Archive, level: Level,
                                             keys: dict[str, str]) -> None:
    conditions = tuple(parse_condition(k, v) for k, v in keys.items())
    full = archive.find(Query(level, conditions))
    assert full
    for scope in (None, ReadScope(facilities=frozenset({"Clinic 1"}))):
        whole = archive.find(Query(level, conditions, scope=scope))
        for offset in range(0, len(whole) + 3, 5):
            page = archive.find(Query(level, conditions, limit=5, offset=offset, scope=scope))
            assert page == whole[offset:offset + 5], (scope, offset)
