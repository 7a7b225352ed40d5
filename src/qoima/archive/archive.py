"""The archive: the one place that uses the index and the blob store together."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import blake3
from sqlalchemy.exc import IntegrityError

from qoima.dicom.attributes import Level
from qoima.dicom.header import ParsedInstance, parse_instance
from qoima.dicom.query import Query
from qoima.errors import Conflict, InvalidDicom, NotFound, QoimaError
from qoima.index import instances as index_instances
from qoima.index import remote_aes as index_remote_aes
from qoima.index import search as index_search
from qoima.index.database import Database
from qoima.index.remote_aes import RemoteAE
from qoima.storage import BlobStore, new_key

logger = logging.getLogger(__name__)


def content_hash(data: bytes, algorithm: str = "blake3") -> str:
    """``algorithm:hex digest`` of a stored file: BLAKE3 for what is stored now (on a host
    without SHA instructions, SHA-256 took a quarter of a CT slice's C-STORE and most of
    the CPU a 10 MB radiograph costs); ``sha256`` for rows made before it."""
    if algorithm == "blake3":
        return f"blake3:{blake3.blake3(data).hexdigest()}"
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def _run_now(fn: Any, *args: Any) -> Future[Any]:
    """``fn(*args)`` run in this thread, as a settled future (``submit`` without the pool)."""
    future: Future[Any] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as exc:
        future.set_exception(exc)
    return future


def _settle(future: Future[Any]) -> None:
    """Wait for ``future``, whatever its outcome (its error is reported elsewhere or moot)."""
    with contextlib.suppress(Exception):
        future.result()


@dataclass(frozen=True)
class StoreResult:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    blob_key: str
    is_duplicate: bool
    size_bytes: int


@dataclass(frozen=True)
class ArchivePolicy:
    duplicate_policy: str = "reject"  # "reject" | "overwrite"
    max_instance_bytes: int = 4 * 1024**3
    max_image_pixels: int = 1 << 28
    max_sequence_depth: int = 32
    orphan_sweep_age_s: float = 3600.0


_UID_COLUMNS = {"StudyInstanceUID": "study_instance_uid",
                "SeriesInstanceUID": "series_instance_uid", "SOPInstanceUID": "sop_instance_uid"}


def _one_instance(query: Query) -> dict[str, str] | None:
    """The UIDs of a query that names one instance by its SOP Instance UID (and perhaps its
    study and series), each matched exactly; None for any other query. Such a query is
    answered by one indexed lookup, without building the general SELECT."""
    uids: dict[str, str] = {}
    for condition in query.conditions:
        if condition.keyword not in _UID_COLUMNS or condition.keyword in uids:
            return None
        if condition.kind == "single":
            uids[condition.keyword] = condition.value
        elif condition.kind == "uid_list" and len(condition.values) == 1:
            uids[condition.keyword] = condition.values[0]
        else:
            return None
    return uids if "SOPInstanceUID" in uids else None


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int


def _stored(row: index_instances.InstanceRow) -> StoredInstance:
    return StoredInstance(row.sop_instance_uid, row.sop_class_uid, row.study_instance_uid,
                          row.series_instance_uid, row.transfer_syntax_uid, row.blob_key,
                          row.size_bytes)


class Archive:
    """Use cases over the index and the blob store: ingest, search, retrieve, delete."""

    def __init__(self, database: Database, blobs: BlobStore, policy: ArchivePolicy) -> None:
        self.database = database
        self.blobs = blobs
        self.policy = policy
        self._blob_writer = ThreadPoolExecutor(max_workers=16, thread_name_prefix="blob-write")

    # Ingest ---------------------------------------------------------------------------------
    def store_instance(self, data: bytes, origin: str) -> StoreResult:
        """The one ingest path (C-STORE, STOW-RS, import, AI outputs): parse, write, index."""
        [outcome] = self._store_all([data], origin)
        if isinstance(outcome, QoimaError):
            raise outcome
        return outcome

    def store_instances(self, datas: Sequence[bytes], origin: str
                        ) -> list[StoreResult | QoimaError]:
        """Several instances (a STOW-RS request) through the same path, with one index
        transaction and so one commit, each outcome in its place: an instance that cannot
        be stored gets its error, the others are stored."""
        return self._store_all(datas, origin)

    def _store_all(self, datas: Sequence[bytes], origin: str
                   ) -> list[StoreResult | QoimaError]:
        outcomes: list[StoreResult | QoimaError | None] = [None] * len(datas)
        pending: list[_Pending] = []
        for index, data in enumerate(datas):
            try:
                if len(data) > self.policy.max_instance_bytes:
                    raise InvalidDicom(f"instance of {len(data)} bytes exceeds the size limit")
                parsed = parse_instance(data, max_image_pixels=self.policy.max_image_pixels,
                                        max_sequence_depth=self.policy.max_sequence_depth)
            except QoimaError as exc:
                outcomes[index] = exc
                continue
            # A batch's blobs are written (and fsynced) in other threads while this one
            # parses and hashes the next instances; a single instance (C-STORE) is written
            # here, without a hand-off to another thread and back. The index transaction
            # starts once the bytes are durable, so an index row never is before its bytes,
            # and the index's write lock (shared by every process on SQLite) is not held
            # while a blob's fsync runs. The duplicate check runs inside the transaction: a
            # rare duplicate costs one blob written and deleted.
            key = new_key()
            write = self._blob_writer.submit if len(datas) > 1 else _run_now
            pending.append(_Pending(index, parsed, key, write(self.blobs.write, key,
                                                              parsed.part10),
                                    content_hash(parsed.part10)))
        if not pending:
            return _all_set(outcomes)
        found: dict[int, tuple[str, str | None]] = {}  # index -> (what happened, blob key)

        def work(conn: Any) -> None:
            found.clear()
            for item in pending:
                uid = item.parsed.sop_instance_uid
                existing = index_instances.find_instance(conn, uid)
                if existing is not None:
                    if item.same_content(existing.content_hash):
                        found[item.index] = ("same", existing.blob_key)
                        continue
                    if self.policy.duplicate_policy != "overwrite":
                        found[item.index] = ("conflict", None)
                        continue
                    index_instances.delete_instance_row(conn, uid)
                    found[item.index] = ("replaced", existing.blob_key)
                index_instances.insert_instance(conn, index_instances.NewInstance(
                    item.parsed.values, item.parsed.transfer_syntax_uid, item.key,
                    len(item.parsed.part10), item.content_hash, origin))

        try:
            for item in pending:
                item.written.result()
            self.database.write_shared(work)
        except IntegrityError as exc:
            self._discard(pending)
            if len(datas) > 1:  # one of them arrived twice at once: store them one by one
                return [self._store_all([data], origin)[0] for data in datas]
            return [self._concurrent_duplicate(pending[0], exc)]
        except BaseException:
            self._discard(pending)
            raise
        for item in pending:
            what, blob_key = found.get(item.index, ("stored", None))
            uid = item.parsed.sop_instance_uid
            if what in ("same", "conflict"):
                self.blobs.delete(item.key)
            if what == "same":
                logger.debug("duplicate instance %s (identical content) ignored", uid)
                outcomes[item.index] = self._result(item.parsed, str(blob_key), True)
                continue
            if what == "conflict":
                outcomes[item.index] = Conflict(
                    f"SOP Instance {uid} is already stored with different content")
                continue
            if blob_key is not None:  # replaced
                self.blobs.delete(blob_key)
            logger.debug("stored instance %s key=%s origin=%s bytes=%d", uid, item.key, origin,
                         len(item.parsed.part10))
            outcomes[item.index] = self._result(item.parsed, item.key, False)
        return _all_set(outcomes)

    def _discard(self, pending: list[_Pending]) -> None:
        for item in pending:
            _settle(item.written)
            self.blobs.delete(item.key)

    def _concurrent_duplicate(self, item: _Pending, exc: IntegrityError) -> StoreResult | Conflict:
        """The same instance arrived twice at once (two senders, or one STOW request)."""
        uid = item.parsed.sop_instance_uid
        other = self.database.read(lambda conn: index_instances.find_instance(conn, uid))
        if other is not None and item.same_content(other.content_hash):
            logger.debug("duplicate instance %s (identical, stored concurrently) ignored", uid)
            return self._result(item.parsed, other.blob_key, True)
        conflict = Conflict(f"SOP Instance {uid} was stored concurrently")
        conflict.__cause__ = exc
        return conflict

    @staticmethod
    def _result(parsed: ParsedInstance, key: str, is_duplicate: bool) -> StoreResult:
        return StoreResult(parsed.sop_instance_uid, parsed.sop_class_uid,
                           parsed.study_instance_uid, parsed.series_instance_uid, key,
                           is_duplicate, len(parsed.part10))

    # Search ---------------------------------------------------------------------------------
    def find(self, query: Query) -> list[dict[str, Any]]:
        """Matches at the query's level, as keyword -> value dicts (multi-values ``\\``-joined)."""
        rows = self.database.read(lambda conn: index_search.find(conn, query))
        for row in rows:
            for keyword in ("ModalitiesInStudy", "SOPClassesInStudy"):
                if row.get(keyword):
                    row[keyword] = row[keyword].strip("\\")
        return rows

    def count(self, query: Query) -> int:
        return self.database.read(lambda conn: index_search.count(conn, query))

    # Retrieve -------------------------------------------------------------------------------
    def instances_for(self, query: Query) -> list[StoredInstance]:
        """Stored instances under the matches of ``query`` (any level), in a stable order."""
        uids = _one_instance(query)
        if uids is not None:  # one instance named by its UIDs (WADO-RS, C-GET at IMAGE level)
            row = self.database.read(
                lambda conn: index_instances.find_instance(conn, uids["SOPInstanceUID"]))
            if row is None or any(getattr(row, _UID_COLUMNS[k]) != v for k, v in uids.items()):
                return []
            return [_stored(row)]
        image_query = Query(Level.IMAGE, query.conditions)
        rows = self.database.read(lambda conn: index_search.find(conn, image_query))
        return [StoredInstance(r["SOPInstanceUID"], r["SOPClassUID"], r["StudyInstanceUID"],
                               r["SeriesInstanceUID"], r["_transfer_syntax_uid"],
                               r["_blob_key"], r["_size_bytes"]) for r in rows]

    def get_instance(self, sop_instance_uid: str) -> StoredInstance:
        row = self.database.read(
            lambda conn: index_instances.find_instance(conn, sop_instance_uid))
        if row is None:
            raise NotFound(f"instance {sop_instance_uid} not found")
        return _stored(row)

    def read_instance(self, stored: StoredInstance) -> bytes:
        return self.blobs.read(stored.blob_key)

    def stream_instance(self, stored: StoredInstance, chunk_bytes: int = 1 << 20
                        ) -> Iterator[bytes]:
        return self.blobs.open_stream(stored.blob_key, chunk_bytes)

    def local_path(self, stored: StoredInstance) -> str | None:
        return self.blobs.local_path(stored.blob_key)

    # Delete ---------------------------------------------------------------------------------
    def delete_instance(self, sop_instance_uid: str) -> None:
        row = self.database.write(
            lambda conn: index_instances.delete_instance_row(conn, sop_instance_uid))
        self.blobs.delete(row.blob_key)
        logger.info("deleted instance %s key=%s", sop_instance_uid, row.blob_key)

    # Housekeeping ---------------------------------------------------------------------------
    def sweep_orphans(self, age_s: float | None = None) -> int:
        """Delete blobs that no instance row refers to (left by a crash between write and
        commit). Only blobs older than ``age_s`` are touched, so in-flight stores are safe."""
        age = self.policy.orphan_sweep_age_s if age_s is None else age_s
        candidates = list(self.blobs.keys_older_than(age))
        referenced = self.database.read(
            lambda conn: index_instances.all_blob_keys(conn, candidates))
        removed = 0
        for key in candidates:
            if key not in referenced:
                self.blobs.delete(key)
                removed += 1
        if removed:
            logger.warning("removed %d orphaned blobs", removed)
        return removed

    def stats(self) -> dict[str, int]:
        return self.database.read(index_instances.count_totals)

    # Remote AEs -----------------------------------------------------------------------------
    def add_remote_ae(self, ae: RemoteAE) -> None:
        self.database.write(lambda conn: index_remote_aes.upsert_remote_ae(conn, ae))

    def remote_aes(self) -> list[RemoteAE]:
        return self.database.read(index_remote_aes.list_remote_aes)

    def remote_ae(self, ae_title: str) -> RemoteAE:
        return self.database.read(lambda conn: index_remote_aes.get_remote_ae(conn, ae_title))

    def remove_remote_ae(self, ae_title: str) -> None:
        self.database.write(lambda conn: index_remote_aes.delete_remote_ae(conn, ae_title))


def _all_set(outcomes: list[StoreResult | QoimaError | None]) -> list[StoreResult | QoimaError]:
    done = [outcome for outcome in outcomes if outcome is not None]
    if len(done) != len(outcomes):
        raise RuntimeError("an instance of the batch was left without an outcome")
    return done


@dataclass(frozen=True)
class _Pending:
    """An instance parsed and on its way to the blob store, waiting for its index row."""

    index: int  # in the batch
    parsed: ParsedInstance
    key: str
    written: Future[None]
    content_hash: str

    def same_content(self, stored_hash: str) -> bool:
        """Whether an instance stored with ``stored_hash`` has the same bytes as this one."""
        algorithm = stored_hash.partition(":")[0]
        mine = self.content_hash if self.content_hash.startswith(f"{algorithm}:") \
            else content_hash(self.parsed.part10, algorithm)
        return stored_hash == mine
