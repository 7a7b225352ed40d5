"""Who is asking: until authentication exists (issue 6), the reader's typed name in a header.

Keep this the only place that knows how the user is identified, so auth can replace it.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.exceptions import HTTPException
from starlette.requests import Request

from qoima.archive.access import current_principal

USER_HEADER = "X-Qoima-User"  # percent-encoded UTF-8: header values are Latin-1 on the wire


def current_user(request: Request) -> str:
    """The reader's name; 401 when the browser has not said who it is."""
    principal = current_principal()  # issue 6: a signed-in user is who they signed in as
    if principal is not None and principal.via != "open":
        return principal.name
    name = unquote(request.headers.get(USER_HEADER, "")).strip()
    if not name:
        raise HTTPException(401, "say who you are first (X-Qoima-User header)")
    return name[:128]
