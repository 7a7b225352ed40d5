"""Queries use indexes, not table scans, so they stay fast as the archive grows."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from qoima.dicom.attributes import Level
from qoima.dicom.query import Query, parse_condition
from qoima.index.database import Database
from qoima.index.search import build_select


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.upgrade()
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return db


@pytest.mark.parametrize(("level", "keyword", "value"), [
    (Level.STUDY, "PatientID", "870412300123"),
    (Level.STUDY, "PatientName", "Иванов*"),
    (Level.STUDY, "StudyDate", "20240101-20240107"),
    (Level.STUDY, "AccessionNumber", "AST-000123"),
    (Level.STUDY, "StudyInstanceUID", "1.2.3.4"),
    (Level.SERIES, "StudyInstanceUID", "1.2.3.4"),
    (Level.IMAGE, "SeriesInstanceUID", "1.2.3.4.5"),
])
def test_matching_key_uses_an_index(database: Database, level: Level, keyword: str,
                                    value: str) -> None:
    statement = build_select(Query(level, (parse_condition(keyword, value),), limit=100))
    compiled = statement.compile(database.engine, compile_kwargs={"literal_binds": True})
    with database.engine.connect() as conn:
        plan = " | ".join(str(row[-1]) for row in conn.execute(
            text(f"EXPLAIN QUERY PLAN {compiled}")))
    scans = [step for step in plan.split(" | ") if step.startswith("SCAN ")
             and "USING" not in step]
    assert not scans, plan


def test_a_page_of_a_date_range_is_cut_from_the_date_index(database: Database) -> None:
    """A year of StudyDate matches thousands of studies; the page's ids come from the date
    index alone (covering), so only the page's rows are joined and read."""
    statement = build_select(Query(Level.STUDY, (parse_condition("StudyDate",
                                                                 "20240101-20241231"),),
                                   limit=50, offset=100))
    compiled = statement.compile(database.engine, compile_kwargs={"literal_binds": True})
    with database.engine.connect() as conn:
        plan = [str(row[-1]) for row in conn.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]
    assert any(step.startswith("SEARCH study USING COVERING INDEX") for step in plan), plan
