"""Transfer syntax conversion for retrieval (PS3.18 8.7.3.5): decode with pydicom's plugins,
re-encode in one of the syntaxes our codecs can write. The SOP Instance UID never changes."""

from __future__ import annotations

import io
import logging
from typing import BinaryIO

import pydicom
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from qoima.dicomweb.errors import NotAcceptableError

logger = logging.getLogger(__name__)

UNCOMPRESSED_SYNTAXES = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
WRITABLE_SYNTAXES = (*UNCOMPRESSED_SYNTAXES, str(RLELossless), str(JPEG2000Lossless),
                     str(JPEGLSLossless))


def transcode(source: str | BinaryIO, transfer_syntax_uid: str) -> bytes:
    """The instance re-encoded as ``transfer_syntax_uid``; 406 when that cannot be done."""
    if transfer_syntax_uid not in WRITABLE_SYNTAXES:
        raise NotAcceptableError(f"transfer syntax {transfer_syntax_uid[:64]} is not supported")
    try:
        ds = pydicom.dcmread(source, force=True)
        stored = UID(str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)))
        has_pixels = "PixelData" in ds
        if has_pixels and stored.is_compressed:
            ds.decompress(generate_instance_uid=False)
        target = UID(transfer_syntax_uid)
        if target.is_compressed:
            if not has_pixels:
                raise NotAcceptableError("an instance without pixel data cannot be compressed")
            ds.compress(target, generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = target
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    except NotAcceptableError:
        raise
    except Exception as exc:
        # Codec failures come as many exception types (RuntimeError, ValueError, ...).
        logger.warning("cannot transcode to %s: %s: %s", transfer_syntax_uid,
                       type(exc).__name__, str(exc)[:160])
        raise NotAcceptableError(f"the instance cannot be converted to {transfer_syntax_uid}"
                            ) from exc
