"""One query model for C-FIND identifiers and QIDO-RS parameters; the index matches it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qoima.dicom.attributes import BY_KEYWORD, COMPUTED_BY_KEYWORD, Level
from qoima.errors import InvalidQuery

_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_UID = re.compile(r"^[0-9.]{1,64}$")


@dataclass(frozen=True)
class Condition:
    """One matching key. ``kind`` is single, wildcard, range, uid_list or universal."""

    keyword: str
    kind: str
    value: str = ""
    low: str = ""
    high: str = ""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReadScope:
    """Studies a caller may read: those of these facilities or regions, or of these patients."""

    facilities: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    patient_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Query:
    level: Level
    conditions: tuple[Condition, ...] = ()
    return_keywords: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    # True for C-FIND (PS3.4: keys above the level only in relational query); QIDO allows all
    allow_any_level: bool = True
    fuzzy: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    scope: ReadScope | None = None  # None: unrestricted; applied in SQL so paging stays exact


def parse_condition(keyword: str, raw: str) -> Condition:
    """Turn one matching value into a Condition under PS3.4 C.2.2.2 rules."""
    attribute = BY_KEYWORD.get(keyword)
    vr = attribute.vr if attribute else (COMPUTED_BY_KEYWORD[keyword].vr
                                         if keyword in COMPUTED_BY_KEYWORD else "")
    if not vr:
        raise InvalidQuery(f"attribute {keyword} is not a supported matching key")
    value = raw.strip()
    # PS3.4 C.2.2.2.3: empty value = universal matching; "*" alone is universal too
    if value in ("", "*"):
        return Condition(keyword, "universal")
    if vr == "UI":
        values = tuple(v.strip() for v in value.replace(",", "\\").split("\\") if v.strip())
        for uid in values:
            if not _UID.match(uid):
                raise InvalidQuery(f"{keyword}: {uid!r} is not a valid UID")
        return Condition(keyword, "uid_list", values=values)
    if vr in ("DA", "TM", "DT"):
        return _parse_range(keyword, vr, value)
    if "\\" in value and vr in ("CS", "SH", "LO", "AE", "IS"):
        return Condition(keyword, "value_list", values=tuple(value.split("\\")))
    # PS3.4 C.2.2.2.4: "*" matches any run of characters, "?" exactly one
    if "*" in value or "?" in value:
        return Condition(keyword, "wildcard", value=value)
    return Condition(keyword, "single", value=value)


def _check(vr: str, keyword: str, value: str) -> str:
    pattern = _DATE if vr == "DA" else _TIME
    if vr == "DA":
        value = value.replace("-", "")  # DICOM JSON / QIDO clients sometimes send ISO dates
    if vr == "TM":
        value = value.replace(":", "")
    if vr in ("DA", "TM") and not pattern.match(value):
        raise InvalidQuery(f"{keyword}: {value!r} is not a valid {vr} value")
    if vr == "DA":
        month, day = int(value[4:6]), int(value[6:8])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            raise InvalidQuery(f"{keyword}: {value!r} is not a valid date")
    return value


def _parse_range(keyword: str, vr: str, value: str) -> Condition:
    if "-" in value and not (vr == "DA" and re.match(r"^\d{4}-\d{2}-\d{2}$", value)):
        low, _, high = value.partition("-")
        low = _check(vr, keyword, low) if low else ""
        high = _check(vr, keyword, high) if high else ""
        if low and high and low > high:
            raise InvalidQuery(f"{keyword}: range start {low} is after its end {high}")
        return Condition(keyword, "range", low=low, high=high)
    if "*" in value or "?" in value:
        return Condition(keyword, "wildcard", value=value)
    return Condition(keyword, "single", value=_check(vr, keyword, value))
