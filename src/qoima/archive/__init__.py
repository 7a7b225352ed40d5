"""Use cases (ingest, search, retrieve, delete, jobs): the only layer using index and storage."""

from qoima.archive.archive import Archive, ArchivePolicy, StoredInstance, StoreResult
from qoima.index.remote_aes import RemoteAE

__all__ = ["Archive", "ArchivePolicy", "RemoteAE", "StoreResult", "StoredInstance"]
