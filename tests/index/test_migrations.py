"""Index migrations on a database that already holds instances, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from qoima.app import build_archive, configure_libraries
from qoima.config import load_settings
from qoima.errors import Conflict
from qoima.index.database import Database, alembic_config
from tests.factories import make_instance, to_bytes


def _migrate(database: Database, revision: str, *, down: bool = False) -> None:
    with database.engine.begin() as conn:
        (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)


def test_hashes_from_before_0006_become_sha256_and_still_find_duplicates(
        tmp_path: Path, database_url: str | None) -> None:
    """Rows stored with a SHA-256 hash (index version 0005) are upgraded to ``sha256:<hex>``;
    the same instances sent again are no-op duplicates, a changed one is refused."""
    configure_libraries()
    archive = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    try:
        datas = [to_bytes(make_instance(study=f"study{n}", patient_id=f"P{n}")) for n in range(3)]
        stored = [archive.store_instance(data, "test") for data in datas]
        _migrate(archive.database, "0005_study_patient_name", down=True)
        old_hashes = {result.blob_key: hashlib.sha256(data).hexdigest()
                      for result, data in zip(stored, datas, strict=True)}
        with archive.database.engine.begin() as conn:  # as the code before 0006 hashed them
            for key, digest in old_hashes.items():
                conn.execute(text("UPDATE instance SET sha256 = :digest WHERE blob_key = :key"),
                             {"digest": digest, "key": key})
        _migrate(archive.database, "heads")
        with archive.database.engine.connect() as conn:
            kept = dict(conn.execute(text("SELECT blob_key, content_hash FROM instance")).all())
        assert kept == {key: f"sha256:{digest}" for key, digest in old_hashes.items()}
        again = [archive.store_instance(data, "test") for data in datas]
        assert [result.is_duplicate for result in again] == [True, True, True]
        assert [result.blob_key for result in again] == [result.blob_key for result in stored]
        changed = make_instance(study="study1", patient_id="P1")
        changed.PatientName = "SOMEONE^ELSE"
        with pytest.raises(Conflict):
            archive.store_instance(to_bytes(changed), "test")
    finally:
        archive.database.dispose()
