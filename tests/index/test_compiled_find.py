"""``search.find`` runs each query shape compiled once, on the DBAPI cursor: its rows are the
rows SQLAlchemy's own execution of the same SELECT gives, for every kind of condition, on
SQLite and PostgreSQL, and a second query of a shape with other values gets its own rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qoima.app import build_archive, configure_libraries
from qoima.archive import Archive
from qoima.config import load_settings
from qoima.dicom.attributes import Level
from qoima.dicom.query import Query, ReadScope, parse_condition
from qoima.index import search
from tests.factories import make_instance, to_bytes


@pytest.fixture
def archive(tmp_path: Path, database_url: str | None) -> Iterator[Archive]:
    configure_libraries()
    built = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    for number in range(12):
        for series in ("ct", "mr"):
            built.store_instance(to_bytes(make_instance(
                patient_id=f"P{number % 3}", patient_name=f"Жұм{number % 4}^Әлі",
                study=f"study{number}", series=series, modality=series.upper(),
                study_date=f"202401{number + 1:02d}", accession=f"ACC_{number}%",
                institution=f"Clinic {number % 2}", charset="ISO_IR 192")), "test")
    yield built
    built.database.dispose()


QUERIES: list[tuple[Level, dict[str, str], dict[str, Any]]] = [
    (Level.STUDY, {}, {}),
    (Level.STUDY, {"PatientID": "P1"}, {}),
    (Level.STUDY, {"PatientName": "жұм1*"}, {}),  # a PN prefix, case-folded
    (Level.STUDY, {"PatientName": "*Әлі"}, {}),  # a wildcard without a literal prefix
    (Level.STUDY, {"AccessionNumber": "ACC_1%"}, {}),  # LIKE metacharacters taken literally
    (Level.STUDY, {"StudyDate": "20240103-20240108"}, {}),
    (Level.STUDY, {"StudyDate": "20240110-"}, {}),
    (Level.STUDY, {"StudyDate": "-20240102"}, {}),
    (Level.STUDY, {"ModalitiesInStudy": "MR"}, {}),
    (Level.STUDY, {"ModalitiesInStudy": "MR\\XA"}, {}),
    (Level.STUDY, {"PatientID": ""}, {}),  # universal
    (Level.STUDY, {"StudyDate": "20240101-20240131"}, {"limit": 4, "offset": 3}),
    (Level.STUDY, {}, {"offset": 5}),
    (Level.STUDY, {}, {"scope": ReadScope(facilities=frozenset({"Clinic 1"}))}),
    (Level.STUDY, {}, {"scope": ReadScope(patient_ids=frozenset({"P0", "P2"}))}),
    (Level.STUDY, {}, {"scope": ReadScope()}),  # nothing granted: empty IN lists
    (Level.SERIES, {"Modality": "CT", "PatientID": "P2"}, {"limit": 2}),
    (Level.IMAGE, {"Modality": "MR"}, {}),
    (Level.PATIENT, {"PatientID": "P*"}, {}),
    (Level.PATIENT, {}, {"scope": ReadScope(facilities=frozenset({"Clinic 0"}))}),
]


@pytest.mark.parametrize(("level", "keys", "options"), QUERIES)
def test_compiled_rows_are_sqlalchemys_rows(archive: Archive, level: Level,
                                            keys: dict[str, str], options: dict[str, Any]
                                            ) -> None:
    query = Query(level, tuple(parse_condition(k, v) for k, v in keys.items()), **options)

    def both(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Any]:
        reference = [dict(row._mapping) for row in conn.execute(search.build_select(query))]
        return search.find(conn, query), reference, conn.dialect

    fast, reference, dialect = archive.database.read(both)
    assert reference or options.get("scope") == ReadScope(), "a query that matches nothing"
    assert fast == reference
    shape, values = search._shape(query)
    assert search._compiled(dialect, shape, len(values)) is not None, \
        "the shape ran through SQLAlchemy"


def test_one_shape_with_other_values_gets_its_own_rows(archive: Archive) -> None:
    def studies(patient_id: str, first: str, last: str) -> list[str]:
        query = Query(Level.STUDY, (parse_condition("PatientID", patient_id),
                                    parse_condition("StudyDate", f"{first}-{last}")), limit=50)
        return [row["StudyDate"] for row in archive.find(query)]

    assert studies("P0", "20240101", "20240131") == ["20240101", "20240104", "20240107",
                                                     "20240110"]
    assert studies("P1", "20240103", "20240108") == ["20240105", "20240108"]
    assert studies("P2", "20240110", "20240112") == ["20240112"]
