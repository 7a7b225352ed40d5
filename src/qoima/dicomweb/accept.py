"""Accept header negotiation (RFC 9110 12.5.1, PS3.18 8.7): media ranges with their parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qoima.dicomweb.errors import NotAcceptableError

_SPLIT_COMMAS = re.compile(r',(?=(?:[^"]*"[^"]*")*[^"]*$)')
_SPLIT_SEMICOLONS = re.compile(r';(?=(?:[^"]*"[^"]*")*[^"]*$)')


@dataclass(frozen=True)
class MediaRange:
    media_type: str  # lower case, e.g. "multipart/related"
    params: dict[str, str] = field(default_factory=dict)
    quality: float = 1.0

    def matches(self, media_type: str) -> bool:
        major, _, minor = self.media_type.partition("/")
        wanted_major, _, wanted_minor = media_type.partition("/")
        return (major == "*" or major == wanted_major) and (minor in ("*", wanted_minor))


def parse_media_type(text: str) -> MediaRange:
    parts = _SPLIT_SEMICOLONS.split(text)
    params: dict[str, str] = {}
    quality = 1.0
    for part in parts[1:]:
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        value = value.strip().strip('"').strip()
        if name == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        elif name:
            params[name] = value
    return MediaRange(parts[0].strip().lower(), params, quality)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges by preference; an absent header is ``*/*``."""
    if not header or not header.strip():
        return [MediaRange("*/*")]
    ranges = [parse_media_type(part) for part in _SPLIT_COMMAS.split(header) if part.strip()]
    ranges = [r for r in ranges if r.quality > 0]
    return sorted(ranges, key=lambda r: -r.quality)


def choose(header: str | None, offered: list[str]) -> tuple[str, MediaRange]:
    """The first offered type the client accepts (client preference first), or 406."""
    for media_range in parse_accept(header):
        for media_type in offered:
            if media_range.matches(media_type):
                return media_type, media_range
    raise NotAcceptableError(f"none of {', '.join(offered)} is acceptable to the client")


MEDIA_TYPE_DICOM_XML = "application/dicom+xml"


def wants_dicom_xml(header: str | None) -> bool:
    """QIDO-RS and metadata (PS3.18 8.7.3): DICOM JSON, or ``multipart/related;
    type="application/dicom+xml"`` (PS3.19 Native DICOM Model), whichever the client prefers;
    JSON for ``*/*``; 406 for neither."""
    for media_range in parse_accept(header):
        if media_range.matches("application/dicom+json") or media_range.matches(
                "application/json"):
            return False
        if (media_range.media_type == "multipart/related"
                and media_range.params.get("type", "").lower() == MEDIA_TYPE_DICOM_XML):
            return True
    raise NotAcceptableError("DICOM JSON or multipart/related application/dicom+xml only")


def multipart_part_types(header: str | None, default_part_type: str
                         ) -> list[MediaRange]:
    """For ``multipart/related; type=...`` resources: the acceptable part types.

    Plain ``application/dicom`` style entries count as parts too (clients send them), and
    ``*/*`` or ``multipart/related`` without a type mean the default part type.
    """
    parts: list[MediaRange] = []
    for media_range in parse_accept(header):
        if media_range.media_type == "multipart/related":
            part_type = media_range.params.get("type", default_part_type).lower()
            params = {k: v for k, v in media_range.params.items() if k != "type"}
            parts.append(MediaRange(part_type, params, media_range.quality))
        elif media_range.media_type in ("*/*", "multipart/*"):
            parts.append(MediaRange(default_part_type, {}, media_range.quality))
        else:
            parts.append(media_range)
    return parts
