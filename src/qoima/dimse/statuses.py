"""DIMSE status codes (PS3.4 Annex B, C, GG; PS3.7 C) and the one exception-to-status map."""

from __future__ import annotations

import logging

from qoima.errors import BackendUnavailable, Conflict, Forbidden, InvalidDicom, InvalidQuery

logger = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_PENDING = 0xFF00
STATUS_CANCEL = 0xFE00
STATUS_OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3 Refused: Out of Resources
STATUS_OUT_OF_RESOURCES_MATCHES = 0xA701  # PS3.4 C.4.2.1.5: unable to calculate matches
STATUS_MOVE_DESTINATION_UNKNOWN = 0xA801  # PS3.4 C.4.2.1.5: Move Destination unknown
STATUS_DATASET_DOES_NOT_MATCH = 0xA900  # PS3.4 B.2.3 / C.4.1.1.4 identifier mismatch
STATUS_CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3 Error: Cannot understand
STATUS_DUPLICATE_DIFFERENT_CONTENT = 0xC211  # 0xCxxx "Cannot understand": Qoima's duplicate refusal
STATUS_UNABLE_TO_PROCESS = 0xC001  # PS3.4 C.4.1.1.4: unable to process
STATUS_SUBOPERATIONS_WARNING = 0xB000  # PS3.4 C.4.2.1.5: sub-operations had failures


def store_status_for(exc: BaseException) -> int:
    """The C-STORE failure status for an exception raised by the archive."""
    if isinstance(exc, Conflict):
        return STATUS_DUPLICATE_DIFFERENT_CONTENT
    if isinstance(exc, InvalidDicom):
        return STATUS_CANNOT_UNDERSTAND
    if isinstance(exc, BackendUnavailable):
        return STATUS_OUT_OF_RESOURCES
    return STATUS_CANNOT_UNDERSTAND


def query_status_for(exc: BaseException) -> int:
    """The C-FIND/C-GET/C-MOVE failure status for an exception raised by the archive."""
    if isinstance(exc, InvalidQuery):
        return STATUS_DATASET_DOES_NOT_MATCH
    if isinstance(exc, Forbidden):
        return STATUS_MOVE_DESTINATION_UNKNOWN
    if isinstance(exc, BackendUnavailable):
        return STATUS_OUT_OF_RESOURCES_MATCHES
    return STATUS_UNABLE_TO_PROCESS
