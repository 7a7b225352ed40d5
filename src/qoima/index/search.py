"""Queries over the index at PATIENT, STUDY, SERIES and IMAGE level, with stable paging."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.sql.util import find_tables

from qoima.dicom.attributes import LEVEL_ORDER, Level, attributes_at
from qoima.dicom.query import Query, ReadScope
from qoima.index.database import DbapiSql
from qoima.index.matching import condition_params, shape_clause, shape_size
from qoima.index.tables import facility_region, instance, patient, series, study

_TABLES = {Level.PATIENT: patient, Level.STUDY: study, Level.SERIES: series,
           Level.IMAGE: instance}


def _level_columns(level: Level) -> dict[str, Any]:
    table = _TABLES[level]
    columns: dict[str, Any] = {}
    for attribute in attributes_at(level):
        columns[attribute.keyword] = table.c[attribute.column]
        if attribute.vr == "PN":
            columns[f"{attribute.keyword}:norm"] = table.c[f"{attribute.column}_norm"]
    return columns


def _computed_columns(level: Level) -> dict[str, Any]:
    if level == Level.STUDY:
        return {"ModalitiesInStudy": study.c.modalities_in_study,
                "SOPClassesInStudy": study.c.sop_classes_in_study,
                "NumberOfStudyRelatedSeries": study.c.number_of_series,
                "NumberOfStudyRelatedInstances": study.c.number_of_instances}
    if level == Level.SERIES:
        return {"NumberOfSeriesRelatedInstances": series.c.number_of_instances}
    if level == Level.PATIENT:
        other = study.alias("patient_study")
        studies = (select(func.count()).select_from(other)
                   .where(other.c.patient_id_fk == patient.c.id).scalar_subquery())
        series_count = (select(func.coalesce(func.sum(other.c.number_of_series), 0))
                        .where(other.c.patient_id_fk == patient.c.id).scalar_subquery())
        instances = (select(func.coalesce(func.sum(other.c.number_of_instances), 0))
                     .where(other.c.patient_id_fk == patient.c.id).scalar_subquery())
        return {"NumberOfPatientRelatedStudies": studies,
                "NumberOfPatientRelatedSeries": series_count,
                "NumberOfPatientRelatedInstances": instances}
    return {}


def _joined(level: Level) -> tuple[Any, dict[str, Any]]:
    """The FROM clause joining ``level`` with every level above it, and the columns available."""
    columns: dict[str, Any] = {}
    from_clause: Any = None
    for current in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]:
        columns.update(_level_columns(current))
        if current == level or current != Level.PATIENT:
            columns.update(_computed_columns(current))
        table = _TABLES[current]
        if from_clause is None:
            from_clause = table
        elif current == Level.STUDY:
            from_clause = from_clause.join(study, study.c.patient_id_fk == patient.c.id)
        elif current == Level.SERIES:
            from_clause = from_clause.join(series, series.c.study_id_fk == study.c.id)
        else:
            from_clause = from_clause.join(instance, instance.c.series_id_fk == series.c.id)
    if level != Level.PATIENT:
        # Below the patient level, names match and return as each study recorded them.
        columns["PatientName"] = study.c.patient_name
        columns["PatientName:norm"] = study.c.patient_name_norm
    return from_clause, columns


def scope_clause(scope: ReadScope, level: Level) -> ColumnElement[bool]:
    """Rows the scope lets a caller read; at PATIENT level, patients with such a study."""
    facilities, regions, patient_ids = _scope_values(scope)
    return _scope_clause(level, facilities, regions, patient_ids)


def _scope_values(scope: ReadScope) -> tuple[list[str], list[str], list[str]]:
    return sorted(scope.facilities), sorted(scope.regions), sorted(scope.patient_ids)


def _scope_clause(level: Level, facilities: list[Any], regions: list[Any],
                  patient_ids: list[Any]) -> ColumnElement[bool]:
    def in_(column: Any, values: list[Any]) -> ColumnElement[bool]:
        return column.in_(values) if values else false()

    def study_in_scope(table: Any) -> ColumnElement[bool]:
        in_region = select(facility_region.c.institution_name).where(
            in_(facility_region.c.region, regions))
        return or_(in_(table.c.institution_name, facilities),
                   table.c.institution_name.in_(in_region))

    granted = in_(patient.c.patient_id, patient_ids)
    if level == Level.PATIENT:
        other = study.alias("scope_study")
        return or_(granted, exists().where(other.c.patient_id_fk == patient.c.id,
                                           study_in_scope(other)))
    return or_(granted, study_in_scope(study))


@functools.cache
def _level_select(level: Level) -> tuple[Any, dict[str, Any], Select[Any]]:
    """The FROM clause, the columns and the SELECT of every return key at ``level``, made once
    (SQLAlchemy constructs are immutable, and the parts' cache keys are then memoized)."""
    from_clause, columns = _joined(level)
    selected = [column.label(keyword) for keyword, column in columns.items()
                if not keyword.endswith(":norm")]
    if level == Level.IMAGE:
        selected += [instance.c.transfer_syntax_uid.label("_transfer_syntax_uid"),
                     instance.c.blob_key.label("_blob_key"),
                     instance.c.size_bytes.label("_size_bytes")]
    if level == Level.STUDY:
        selected += [study.c.ai_priority.label("_ai_priority"),
                     study.c.updated_at.label("_updated_at")]
    return from_clause, columns, select(*selected).select_from(from_clause)


Shape = tuple[Level, tuple[tuple[Any, ...], ...], bool, bool]


def _shape(query: Query) -> tuple[Shape, list[Any]]:
    """The query as the shape of its SQL (level, each condition's and the scope's shape,
    whether it has a limit and an offset) and its parameter values in order."""
    shapes, values = [], []
    for condition in query.conditions:
        shape, condition_values = condition_params(condition)
        shapes.append(shape)
        values += condition_values
    if query.scope is not None:
        lists = _scope_values(query.scope)
        shapes.append(("scope", *(len(values) for values in lists)))
        values += [value for values in lists for value in values]
    if query.limit is not None:
        values.append(query.limit)
    if query.offset:
        values.append(query.offset)
    return (query.level, tuple(shapes), query.limit is not None, bool(query.offset)), values


def _build(shape: Shape, binds: list[Any]) -> Select[Any]:
    """The SELECT of a query's shape; ``binds``: its parameters (values or bind parameters)."""
    level, shapes, has_limit, has_offset = shape
    from_clause, columns, statement = _level_select(level)
    taken = iter(binds)
    clauses = []
    for part in shapes:
        if part[0] == "scope":
            lists = [[next(taken) for _ in range(size)] for size in part[1:]]
            clauses.append(_scope_clause(level, *lists))
        else:
            clauses.append(shape_clause(part, columns, [next(taken) for _ in range(
                shape_size(part))]))
    table = _TABLES[level]
    if not has_limit and not has_offset:
        return (statement.where(*clauses) if clauses else statement).order_by(table.c.id)
    # A page: the ids first, from the level's own table alone when the conditions need no
    # other (an index on the matched column then covers it: a year of StudyDate at 100k
    # instances, 11 ms -> under 1 ms), then the page's rows. Joining every match's parents
    # before sorting and cutting the page cost more than the query itself.
    referenced = {t for clause in clauses for t in find_tables(clause, check_columns=True)}
    only_own = not referenced & (set(_TABLES.values()) - {table})
    page = select(table.c.id).select_from(table if only_own else from_clause).correlate(None)
    if clauses:
        page = page.where(*clauses)
    page = page.order_by(table.c.id)
    if has_limit:
        page = page.limit(next(taken))
    if has_offset:
        page = page.offset(next(taken))
    return statement.where(table.c.id.in_(page.scalar_subquery())).order_by(table.c.id)


def build_select(query: Query) -> Select[Any]:
    shape, values = _shape(query)
    return _build(shape, values)


def find(conn: Connection, query: Query) -> list[dict[str, Any]]:
    """Matches for ``query``: one dict per match, keyed by DICOM keyword (and ``_`` extras).
    Each query shape is compiled once per dialect and run on the DBAPI cursor with its
    values (building, keying and executing the SELECT through SQLAlchemy cost about
    0.4 ms a query, more than SQLite's own work for most of them)."""
    shape, values = _shape(query)
    compiled = _compiled(conn.dialect, shape, len(values))
    if compiled is None:  # a shape that the DBAPI path cannot run
        return [dict(row._mapping) for row in conn.execute(_build(shape, values))]
    dbapi_sql, labels = compiled
    cursor = dbapi_sql.execute(conn, {f"p{n}": value for n, value in enumerate(values)})
    return [dict(zip(labels, row, strict=True)) for row in cursor.fetchall()]


@functools.lru_cache(maxsize=512)
def _compiled(dialect: Any, shape: Shape, count: int) -> tuple[DbapiSql, list[str]] | None:
    """The shape's SELECT with parameters ``p0`` .. ``p{count-1}``, compiled for
    ``dialect``, and its column labels; None when it needs SQLAlchemy's execution (an
    expanding IN, a column whose type converts results)."""
    statement = _build(shape, [bindparam(f"p{n}") for n in range(count)])
    compiled = DbapiSql.compile(statement, dialect, {f"p{n}" for n in range(count)})
    if "POSTCOMPILE" in compiled.sql or any(
            column.type.result_processor(dialect, None) is not None
            for column in statement.selected_columns):
        return None
    return compiled, [column.key for column in statement.selected_columns]


def count(conn: Connection, query: Query) -> int:
    inner = build_select(Query(query.level, query.conditions, scope=query.scope)).subquery()
    return int(conn.execute(select(func.count()).select_from(inner)).scalar_one())
