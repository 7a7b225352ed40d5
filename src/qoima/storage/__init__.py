"""Blob stores by opaque key. Knows nothing of DICOM."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from qoima.storage.base import BlobStore, new_key
from qoima.storage.filesystem import FilesystemBlobStore

__all__ = ["BlobStore", "FilesystemBlobStore", "new_key", "open_blob_store"]


def open_blob_store(url: str) -> BlobStore:
    """Choose the backend by URL scheme: ``file:///path`` (``s3://`` is planned, issue 2)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return FilesystemBlobStore(Path(parsed.path))
    raise ValueError(f"unsupported storage URL scheme {parsed.scheme!r}")
