"""UIDs taken from request paths and parameters: checked before they go anywhere."""

from __future__ import annotations

import re

from starlette.requests import Request

from qoima.dicomweb.errors import BadRequestError

# PS3.5 9.1: digits and dots, components without leading zeros, at most 64 characters
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def check_uid(value: str, name: str) -> str:
    if len(value) > 64 or not _UID.match(value):
        raise BadRequestError(f"{name} {value[:70]!r} is not a valid UID")
    return value


def path_uid(request: Request, name: str) -> str:
    return check_uid(str(request.path_params[name]), name)
