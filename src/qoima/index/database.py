"""Engine creation, SQLite pragmas, one-writer transactions and Alembic upgrades."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

try:
    import fcntl
except ImportError:  # not POSIX: SQLite's own locking only
    fcntl = None  # type: ignore[assignment]

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError

from qoima.errors import BackendUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class Database:
    """One engine; writes go through ``write`` (serialised for SQLite), reads through ``read``."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=16, max_overflow=32,
            )
            _configure_sqlite(self.engine, sqlite_synchronous)
        else:
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            self.engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._writer: Connection | None = None  # SQLite: the one write connection, kept open
        self._queued: list[_Queued] = []  # SQLite: ``write_shared`` work waiting for the lock
        self._queue_lock = threading.Lock()
        self._lock_file = _write_lock_file(self.engine.url.database) if self.is_sqlite else None

    def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction; one writer at a time on SQLite."""
        if self._write_lock is None:
            try:
                with self.engine.begin() as conn:
                    return work(conn)
            except OperationalError as exc:
                raise _unavailable(exc) from exc
        with self._write_lock:
            return self._write_locked(work)

    def write_shared(self, work: Callable[[Connection], T]) -> T:
        """``write``, except that on SQLite ``work`` may share its transaction, and so its
        commit, with the work of other threads that waited for the write lock meanwhile
        (group commit): whichever takes the lock runs all that is queued by then. ``work``
        must be safe to run again, since a shared transaction that fails is undone and each
        of its works then runs in a transaction of its own, for its own outcome."""
        if self._write_lock is None:
            return self.write(work)
        queued = _Queued(work)
        with self._queue_lock:
            self._queued.append(queued)
        with self._write_lock:
            if not queued.is_done:
                with self._queue_lock:
                    batch, self._queued = self._queued, []
                self._run_batch(batch)
        if queued.error is not None:
            raise queued.error
        return cast(T, queued.result)

    def _run_batch(self, batch: list[_Queued]) -> None:
        """The queued works in one transaction; if it fails, each again in its own."""
        try:
            try:
                results = self._write_locked(lambda conn: [item.work(conn) for item in batch])
            except Exception as exc:
                if len(batch) == 1:
                    batch[0].settle(error=exc)
                for item in batch:
                    if not item.is_done:
                        try:
                            item.settle(self._write_locked(item.work))
                        except Exception as each:
                            item.settle(error=each)
            else:
                for item, result in zip(batch, results, strict=True):
                    item.settle(result)
        finally:  # interrupted (KeyboardInterrupt, ...): no waiting work may pass for done
            for item in batch:
                if not item.is_done:
                    item.settle(error=BackendUnavailable("database write interrupted"))

    def _write_locked(self, work: Callable[[Connection], T]) -> T:
        """SQLite: ``work`` in a transaction on the one write connection; the caller holds
        ``_write_lock``. Writes are serialised anyway, so they share one connection instead
        of taking one from the pool each time; an error gives it back."""
        try:
            with _holding(self._lock_file):
                if self._writer is None:
                    self._writer = self.engine.connect().execution_options(
                        sqlite_immediate=True)
                try:
                    with self._writer.begin():
                        return work(self._writer)
                except BaseException:
                    self._writer.close()
                    self._writer = None
                    raise
        except OperationalError as exc:
            raise _unavailable(exc) from exc

    def read(self, work: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect() as conn:
                return work(conn)
        except OperationalError as exc:
            raise _unavailable(exc) from exc

    def upgrade(self) -> None:
        """Bring the schema to the newest Alembic revision of every branch."""
        # BEGIN IMMEDIATE on SQLite: a CLI command and a starting server may upgrade at the
        # same time; the second waits for the first instead of failing with "locked".
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, \
                conn.begin():
            command.upgrade(alembic_config(conn), "heads")  # one branch per feature area

    def dispose(self) -> None:
        if self._write_lock is not None:
            with self._write_lock:
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                if self._lock_file is not None:
                    os.close(self._lock_file)
                    self._lock_file = None
        self.engine.dispose()


def _unavailable(exc: OperationalError) -> BackendUnavailable:
    return BackendUnavailable(f"database unavailable: {str(exc.orig)[:200]}")


class _Queued:
    """A ``write_shared`` work and, once run, its result or error."""

    def __init__(self, work: Callable[[Connection], Any]) -> None:
        self.work = work
        self.is_done = False
        self.result: Any = None
        self.error: Exception | None = None

    def settle(self, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error, self.is_done = result, error, True


def _write_lock_file(path: str | None) -> int | None:
    """A lock file beside an SQLite database file, for writers in other processes (``serve
    --workers``, the CLI). SQLite's own lock makes a writer that finds it taken sleep and
    retry (1, 2, 5, 10 ms ...); an flock wakes the next writer as soon as it is released.
    None for an in-memory database."""
    if not path or path.startswith(":memory:") or fcntl is None:
        return None
    return os.open(f"{path}.write-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)


@contextlib.contextmanager
def _holding(lock_file: int | None) -> Iterator[None]:
    if lock_file is None:
        yield
        return
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(lock_file, fcntl.LOCK_UN)


@dataclass(frozen=True)
class DbapiSql:
    """A Core statement compiled for one dialect, to run on the DBAPI cursor: its SQL text,
    the order of its parameters (None for named paramstyles) and the values of the
    parameters the statement fixes itself (such as the 1 of "n + 1")."""

    sql: str
    order: tuple[str, ...] | None
    constants: dict[str, Any]

    @classmethod
    def compile(cls, statement: Any, dialect: Any, names: Collection[str]) -> DbapiSql:
        """``statement`` for ``dialect``; ``names``: the parameters each run gives."""
        done = statement.compile(dialect=dialect, column_keys=list(names))
        order = tuple(done.positiontup) if done.positional and done.positiontup else None
        return cls(done.string, order,
                   {name: value for name, value in done.params.items() if name not in names})

    def execute(self, conn: Connection, params: dict[str, Any]) -> Any:
        """Run with ``params`` on ``conn``'s DBAPI connection; returns the cursor."""
        if self.constants:
            params = {**self.constants, **params}
        args: Any = [params[name] for name in self.order] if self.order is not None else params
        return dbapi_execute(conn, self.sql, args)


# (dialect, statement id, parameter names) -> (statement, its compiled form); the statement
# is kept so that its id is never reused.
_RAW_SQL: dict[tuple[str, int, tuple[str, ...]], tuple[Any, DbapiSql]] = {}


def raw_execute(conn: Connection, statement: Any, params: dict[str, Any]) -> Any:
    """Run a Core statement on the DBAPI cursor of ``conn``'s transaction and return the
    cursor. For the few statements run on every stored instance: SQLAlchemy's per-execution
    work (contexts, result objects, events) costs more than SQLite itself. The statement is
    compiled once per dialect and parameter set, so it must be a module-level constant; its
    columns must need no type conversion (text and numbers). DBAPI errors come out as
    SQLAlchemy's (IntegrityError, ...)."""
    key = (conn.dialect.name, id(statement), tuple(params))
    compiled = _RAW_SQL.get(key)
    if compiled is None or compiled[0] is not statement:
        compiled = _RAW_SQL[key] = (statement,
                                    DbapiSql.compile(statement, conn.dialect, params.keys()))
    return compiled[1].execute(conn, params)


def dbapi_execute(conn: Connection, sql: str, args: Any) -> Any:
    """``sql`` on a DBAPI cursor of ``conn``'s connection; DBAPI errors as SQLAlchemy's."""
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, args)
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error) from exc
    return cursor


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for Qoima's migrations, run on ``conn``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    return config


def _configure_sqlite(engine: Engine, synchronous: str) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy see explicit BEGINs: pysqlite's own transaction handling is off.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # BEGIN IMMEDIATE takes the write lock up front, so a writer never fails half-way
        # on SQLITE_BUSY when upgrading a read lock.
        # Sent on the DBAPI connection: SQLAlchemy's execution machinery cost more than the
        # BEGIN itself on every stored instance.
        immediate = conn.get_execution_options().get("sqlite_immediate")
        dbapi_execute(conn, "BEGIN IMMEDIATE" if immediate else "BEGIN", ()).close()
