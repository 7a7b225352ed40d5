"""PS3.4 C.2.2.2 matching rules as SQL: single value, wildcard, range, UID list, universal.

Person names match case-insensitively on the case-folded ``*_norm`` columns. Wildcards with a
literal prefix also get a range condition on that prefix so the index is used, not a scan.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, or_, true

from qoima.dicom.attributes import BY_KEYWORD
from qoima.dicom.query import Condition
from qoima.errors import InvalidQuery
from qoima.index.instances import normalise_person_name

_LIKE_ESCAPE = "\\"


def like_pattern(value: str) -> str:
    """DICOM wildcard to SQL LIKE: escape ``%`` and ``_`` and the escape char, map ``*``/``?``."""
    out = []
    for char in value:
        if char in ("%", "_", _LIKE_ESCAPE):
            out.append(_LIKE_ESCAPE + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def _literal_prefix(value: str) -> str:
    prefix = []
    for char in value:
        if char in "*?":
            break
        prefix.append(char)
    return "".join(prefix)


def _prefix_range(column: Any, prefix: str) -> ColumnElement[bool]:
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def condition_clause(condition: Condition, columns: dict[str, Any]) -> ColumnElement[bool]:
    """SQL for one condition; ``columns`` maps keywords to their SQLAlchemy columns."""
    attribute = BY_KEYWORD.get(condition.keyword)
    is_person_name = attribute is not None and attribute.vr == "PN"
    if condition.keyword == "ModalitiesInStudy":
        return _modalities_clause(condition, columns["ModalitiesInStudy"])
    column = columns.get(f"{condition.keyword}:norm" if is_person_name else condition.keyword)
    if column is None:
        raise InvalidQuery(f"{condition.keyword} cannot be matched at this level")
    fold = normalise_person_name if is_person_name else (lambda v: v)
    if condition.kind == "universal":
        return true()
    if condition.kind == "single":
        return column == fold(condition.value)
    if condition.kind in ("uid_list", "value_list"):
        return column.in_([fold(v) for v in condition.values])
    if condition.kind == "wildcard":
        value = str(fold(condition.value))
        clause = column.like(like_pattern(value), escape=_LIKE_ESCAPE)
        prefix = _literal_prefix(value)
        return and_(_prefix_range(column, prefix), clause) if prefix else clause
    if condition.kind == "range":
        parts = []
        if condition.low:
            parts.append(column >= condition.low)
        if condition.high:
            # "~" sorts after digits, so a partial high bound (TM "12") includes 12:59:59.
            parts.append(column <= condition.high + "~")
        return and_(*parts) if parts else true()
    raise InvalidQuery(f"unsupported matching kind {condition.kind!r}")


def _modalities_clause(condition: Condition, column: Any) -> ColumnElement[bool]:
    if condition.kind == "universal":
        return true()
    values = condition.values or (condition.value,)
    # Stored as "\\CR\\DX\\": an escaped backslash on each side matches one whole member.
    return or_(*(column.like("%\\\\" + like_pattern(v) + "\\\\%", escape=_LIKE_ESCAPE)
                 for v in values))
