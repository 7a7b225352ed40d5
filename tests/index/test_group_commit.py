"""Group commit on SQLite: writes that wait for the write lock share one transaction, and each
still gets its own result or error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event
from sqlalchemy.exc import IntegrityError

from qoima.index.database import Database


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite'}")
    db.write(lambda conn: conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v INT)"))
    return db


def _insert(key: str, value: int) -> Any:
    def work(conn: Connection) -> int:
        conn.exec_driver_sql("INSERT INTO t (k, v) VALUES (?, ?)", (key, value))
        return value
    return work


def _rows(db: Database) -> dict[str, int]:
    return dict(db.read(lambda conn: conn.exec_driver_sql("SELECT k, v FROM t").all()))


def _queue_behind_a_held_write(db: Database, works: list[Any]) -> list[Future[Any]]:
    """Start ``works`` with ``write_shared`` while another write holds the lock, and let
    that write finish once all of them wait."""
    holding, release = threading.Event(), threading.Event()

    def held(conn: Connection) -> None:
        holding.set()
        assert release.wait(10)
        conn.exec_driver_sql("INSERT INTO t (k, v) VALUES ('held', 0)")

    pool = ThreadPoolExecutor(len(works) + 1)
    first = pool.submit(db.write_shared, held)
    assert holding.wait(10)
    futures = [pool.submit(db.write_shared, work) for work in works]
    deadline = time.monotonic() + 10
    while len(db._queued) < len(works) and time.monotonic() < deadline:
        time.sleep(0.005)
    release.set()
    first.result(10)
    pool.shutdown(wait=True)
    return futures


def test_waiting_writes_share_one_commit(database: Database) -> None:
    commits = []
    event.listen(database.engine, "commit", lambda conn: commits.append(1))
    futures = _queue_behind_a_held_write(database, [_insert(f"k{n}", n) for n in range(8)])
    assert [f.result() for f in futures] == list(range(8))
    assert _rows(database) == {"held": 0, **{f"k{n}": n for n in range(8)}}
    assert len(commits) == 2  # the held write, then the eight together


def test_a_failing_write_fails_alone(database: Database) -> None:
    database.write_shared(_insert("taken", 1))
    works = [_insert("a", 1), _insert("taken", 2), _insert("b", 3)]
    futures = _queue_behind_a_held_write(database, works)
    assert futures[0].result() == 1
    with pytest.raises(IntegrityError):
        futures[1].result()
    assert futures[2].result() == 3
    assert _rows(database) == {"taken": 1, "held": 0, "a": 1, "b": 3}


def test_a_write_alone_raises_its_own_error(database: Database) -> None:
    database.write_shared(_insert("x", 1))
    with pytest.raises(IntegrityError):
        database.write_shared(_insert("x", 2))
    assert database.write_shared(_insert("y", 2)) == 2  # the connection is usable again
    assert _rows(database) == {"x": 1, "y": 2}
