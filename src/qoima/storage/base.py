"""The blob-store contract: opaque server-made keys to bytes. Knows nothing of DICOM."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Protocol

from qoima.errors import NotFound

_KEY = re.compile(r"^[0-9a-f]{32}$")


def new_key() -> str:
    """A fresh blob key; never derived from UIDs or client input."""
    return uuid.uuid4().hex


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise NotFound(f"blob {key!r} is not a valid key")
    return key


class BlobStore(Protocol):
    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` durably under the new ``key``. Nothing reads a key before its
        write returns; a write cut short by a crash may leave part of it, which the orphan
        sweeper removes (``keys_older_than``)."""

    def read(self, key: str) -> bytes: ...

    def read_range(self, key: str, start: int, length: int) -> bytes: ...

    def open_stream(self, key: str, chunk_bytes: int = 1 << 20) -> Iterator[bytes]: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing key is not an error."""

    def keys_older_than(self, age_s: float) -> Iterator[str]:
        """Keys written more than ``age_s`` seconds ago (for the orphan sweeper)."""

    def local_path(self, key: str) -> str | None:
        """A filesystem path for zero-copy serving, or None for remote stores."""
