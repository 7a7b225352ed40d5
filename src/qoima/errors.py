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
