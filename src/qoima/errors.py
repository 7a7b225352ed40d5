"""The small exception family every layer shares. Names describe the problem, not the layer."""


class QoimaError(Exception):
    """Base of every error Qoima raises on purpose."""


class NotFound(QoimaError):
    """A blob, instance, study or other named thing does not exist."""


class Conflict(QoimaError):
    """The request clashes with what is stored (same UID, different content)."""


class InvalidDicom(QoimaError):
    """Input that is not acceptable DICOM; the message says why, without PHI."""


class InvalidQuery(QoimaError):
    """A query key or value that cannot be matched (bad date range, unknown key)."""


class BackendUnavailable(QoimaError):
    """The database, blob store or queue cannot be reached or is full."""


class Forbidden(QoimaError):
    """The caller is known but may not do this (unknown C-MOVE destination, no permission)."""


# The HTTP status each error answers with, for DICOMweb and the web API alike.
_HTTP_STATUS: tuple[tuple[type[QoimaError], int], ...] = (
    (NotFound, 404), (InvalidQuery, 400), (InvalidDicom, 400), (Conflict, 409),
    (Forbidden, 403), (BackendUnavailable, 503),
)


def http_status(exc: BaseException) -> int | None:
    """The HTTP status for one of these errors; None for anything else (a 500)."""
    for kind, status in _HTTP_STATUS:
        if isinstance(exc, kind):
            return status
    return None
