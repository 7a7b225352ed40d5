"""PS3.4 C.2.2.2 matching rules as SQL: single value, wildcard, range, UID list, universal.

Person names match case-insensitively on the case-folded ``*_norm`` columns. Wildcards with a
literal prefix also get a range condition on that prefix so the index is used, not a scan.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

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


def condition_params(condition: Condition) -> tuple[tuple[Any, ...], list[Any]]:
    """One condition as the shape of its SQL and the values of its parameters, in order: two
    conditions of one shape are the same SQL with other values (``search`` compiles a shape
    once)."""
    keyword, kind = condition.keyword, condition.kind
    if keyword == "ModalitiesInStudy":
        if kind == "universal":
            return (keyword, "true"), []
        values = condition.values or (condition.value,)
        # Stored as "\\CR\\DX\\": an escaped backslash on each side matches one whole member.
        return (keyword, "any_like", len(values)), [
            "%\\\\" + like_pattern(v) + "\\\\%" for v in values]
    attribute = BY_KEYWORD.get(keyword)
    is_person_name = attribute is not None and attribute.vr == "PN"
    column = f"{keyword}:norm" if is_person_name else keyword
    fold = normalise_person_name if is_person_name else (lambda v: v)
    if kind == "universal":
        return (column, "true"), []
    if kind == "single":
        return (column, "eq"), [fold(condition.value)]
    if kind in ("uid_list", "value_list"):
        values = [fold(v) for v in condition.values]
        return (column, "in", len(values)), values
    if kind == "wildcard":
        value = str(fold(condition.value))
        prefix = _literal_prefix(value)
        if prefix:  # also a range on the literal prefix, so the index is used, not a scan
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            return (column, "prefix_like"), [prefix, upper, like_pattern(value)]
        return (column, "like"), [like_pattern(value)]
    if kind == "range":
        # "~" sorts after digits, so a partial high bound (TM "12") includes 12:59:59.
        bounds = [*([condition.low] if condition.low else []),
                  *([condition.high + "~"] if condition.high else [])]
        return (column, "range", bool(condition.low), bool(condition.high)), bounds
    raise InvalidQuery(f"unsupported matching kind {kind!r}")


def shape_size(shape: tuple[Any, ...]) -> int:
    """How many parameters a condition's shape takes."""
    what = shape[1]
    if what in ("in", "any_like"):
        return int(shape[2])
    if what == "range":
        return int(shape[2]) + int(shape[3])
    return {"true": 0, "eq": 1, "like": 1, "prefix_like": 3}[what]


def shape_clause(shape: tuple[Any, ...], columns: dict[str, Any], binds: list[Any]
                 ) -> ColumnElement[bool]:
    """The SQL of a condition's shape (``condition_params``), its parameters ``binds``:
    the values themselves, or bind parameters standing for them."""
    name, what = shape[0], shape[1]
    column = columns.get(name)
    if column is None:
        raise InvalidQuery(f"{name.split(':')[0]} cannot be matched at this level")
    if what == "true":
        return true()
    if what == "eq":
        return column == binds[0]
    if what == "in":
        return column.in_(binds) if binds else false()
    if what == "like":
        return column.like(binds[0], escape=_LIKE_ESCAPE)
    if what == "prefix_like":
        return and_(column >= binds[0], column < binds[1],
                    column.like(binds[2], escape=_LIKE_ESCAPE))
    if what == "any_like":
        return or_(*(column.like(bind, escape=_LIKE_ESCAPE) for bind in binds))
    # range
    has_low, has_high = shape[2], shape[3]
    parts = []
    if has_low:
        parts.append(column >= binds[0])
    if has_high:
        parts.append(column <= binds[1 if has_low else 0])
    return and_(*parts) if parts else true()


def condition_clause(condition: Condition, columns: dict[str, Any]) -> ColumnElement[bool]:
    """SQL for one condition; ``columns`` maps keywords to their SQLAlchemy columns."""
    shape, values = condition_params(condition)
    return shape_clause(shape, columns, values)
