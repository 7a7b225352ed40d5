"""The archive: the one place that uses the index and the blob store together."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from qoima.dicom.attributes import Level
from qoima.dicom.header import ParsedInstance, parse_instance
from qoima.dicom.query import Query
from qoima.errors import Conflict, InvalidDicom, NotFound
from qoima.index import instances as index_instances
from qoima.index import remote_aes as index_remote_aes
from qoima.index import search as index_search
from qoima.index.database import Database
from qoima.index.remote_aes import RemoteAE
from qoima.storage import BlobStore, new_key

logger = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class StoredInstance:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size_bytes: int


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
        if len(data) > self.policy.max_instance_bytes:
            raise InvalidDicom(f"instance of {len(data)} bytes exceeds the size limit")
        parsed = parse_instance(data, max_image_pixels=self.policy.max_image_pixels,
                                max_sequence_depth=self.policy.max_sequence_depth)
        # The blob is written (and fsynced) in another thread while this one hashes it and
        # runs the index statements; the commit waits for the blob, so an index row is never
        # durable before its bytes. The duplicate check runs inside the write transaction:
        # one read transaction fewer per instance; a rare duplicate costs one blob written
        # and deleted.
        key = new_key()
        written = self._blob_writer.submit(self.blobs.write, key, parsed.part10)
        sha256 = hashlib.sha256(parsed.part10).hexdigest()
        new = index_instances.NewInstance(parsed.values, parsed.transfer_syntax_uid, key,
                                          len(parsed.part10), sha256, origin)
        replaced: list[str] = []
        try:
            def work(conn: Any) -> None:
                existing = index_instances.find_instance(conn, parsed.sop_instance_uid)
                if existing is not None:
                    if existing.sha256 == sha256:
                        raise _SameContent(existing.blob_key)
                    if self.policy.duplicate_policy != "overwrite":
                        raise Conflict(f"SOP Instance {parsed.sop_instance_uid} is already "
                                       "stored with different content")
                    index_instances.delete_instance_row(conn, parsed.sop_instance_uid)
                    replaced.append(existing.blob_key)
                index_instances.insert_instance(conn, new)
                written.result()

            self.database.write(work)
        except _SameContent as same:
            _settle(written)
            self.blobs.delete(key)
            logger.info("duplicate instance %s (identical content) ignored",
                        parsed.sop_instance_uid)
            return self._result(parsed, same.blob_key, True)
        except IntegrityError as exc:
            _settle(written)
            self.blobs.delete(key)
            # the same instance arrived twice at once (two senders, or one STOW request)
            other = self.database.read(
                lambda conn: index_instances.find_instance(conn, parsed.sop_instance_uid))
            if other is not None and other.sha256 == sha256:
                logger.info("duplicate instance %s (identical, stored concurrently) ignored",
                            parsed.sop_instance_uid)
                return self._result(parsed, other.blob_key, True)
            raise Conflict(
                f"SOP Instance {parsed.sop_instance_uid} was stored concurrently") from exc
        except BaseException:
            _settle(written)
            self.blobs.delete(key)
            raise
        for old_key in replaced:
            self.blobs.delete(old_key)
        logger.info("stored instance %s key=%s origin=%s bytes=%d", parsed.sop_instance_uid,
                    key, origin, len(parsed.part10))
        return self._result(parsed, key, False)

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
        return StoredInstance(row.sop_instance_uid, row.sop_class_uid, row.study_instance_uid,
                              row.series_instance_uid, row.transfer_syntax_uid, row.blob_key,
                              row.size_bytes)

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


class _SameContent(Exception):
    def __init__(self, blob_key: str) -> None:
        super().__init__(blob_key)
        self.blob_key = blob_key
