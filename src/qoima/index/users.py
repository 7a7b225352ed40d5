"""Users, API tokens, sessions, reading pools, access grants, DIMSE peers, export projects, and
the lookups that decide whether a study is in someone's scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from qoima.errors import Conflict, NotFound
from qoima.index.tables import (
    access_grant,
    api_token,
    app_user,
    dimse_peer,
    export_project,
    facility_region,
    instance,
    patient,
    reading_pool,
    series,
    study,
    user_session,
)


@dataclass(frozen=True)
class UserRow:
    username: str
    password_hash: str | None
    role: str
    institution_name: str | None
    region: str | None
    is_active: bool


@dataclass(frozen=True)
class PeerRow:
    ae_title: str
    institution_name: str | None
    role: str
    addresses: str


@dataclass(frozen=True)
class StudyScope:
    study_instance_uid: str
    patient_id: str
    institution_name: str
    region: str


def _user(row: Any) -> UserRow:
    return UserRow(row.username, row.password_hash, row.role, row.institution_name, row.region,
                   bool(row.is_active))


def add_user(conn: Connection, user: UserRow, now: float) -> None:
    try:
        conn.execute(insert(app_user).values(
            username=user.username, password_hash=user.password_hash, role=user.role,
            institution_name=user.institution_name, region=user.region,
            is_active=int(user.is_active), created_at=now))
    except IntegrityError as exc:
        raise Conflict(f"user {user.username!r} already exists") from exc


def set_password_hash(conn: Connection, username: str, password_hash: str) -> None:
    done = conn.execute(update(app_user).where(app_user.c.username == username)
                        .values(password_hash=password_hash))
    if not done.rowcount:
        raise NotFound(f"user {username!r} not found")


def get_user(conn: Connection, username: str) -> UserRow | None:
    row = conn.execute(select(app_user).where(app_user.c.username == username)).first()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[UserRow]:
    return [_user(r) for r in conn.execute(select(app_user).order_by(app_user.c.username))]


def count_users(conn: Connection) -> int:
    return len(conn.execute(select(app_user.c.username).limit(1)).all())


def add_token(conn: Connection, token_hash: str, username: str, label: str, now: float,
              expires_at: float | None) -> None:
    conn.execute(insert(api_token).values(token_hash=token_hash, username=username, label=label,
                                          created_at=now, expires_at=expires_at))


def user_for_token(conn: Connection, token_hash: str, now: float) -> UserRow | None:
    query = (select(app_user).join(api_token, api_token.c.username == app_user.c.username)
             .where(api_token.c.token_hash == token_hash)
             .where(or_(api_token.c.expires_at.is_(None), api_token.c.expires_at > now)))
    row = conn.execute(query).first()
    return _user(row) if row else None


def add_session(conn: Connection, session_hash: str, username: str, now: float,
                expires_at: float) -> None:
    conn.execute(delete(user_session).where(user_session.c.expires_at < now))
    conn.execute(insert(user_session).values(session_hash=session_hash, username=username,
                                             created_at=now, expires_at=expires_at))


def user_for_session(conn: Connection, session_hash: str, now: float) -> UserRow | None:
    query = (select(app_user).join(user_session, user_session.c.username == app_user.c.username)
             .where(user_session.c.session_hash == session_hash)
             .where(user_session.c.expires_at > now))
    row = conn.execute(query).first()
    return _user(row) if row else None


def delete_session(conn: Connection, session_hash: str) -> None:
    conn.execute(delete(user_session).where(user_session.c.session_hash == session_hash))


def add_pool_member(conn: Connection, pool: str, member: str) -> None:
    exists = conn.execute(select(reading_pool.c.name).where(reading_pool.c.name == pool)
                          .where(reading_pool.c.member == member)).first()
    if exists is None:
        conn.execute(insert(reading_pool).values(name=pool, member=member))


def pool_members_for(conn: Connection, username: str) -> list[str]:
    """Facility and region members of every pool that lists ``user:username``."""
    pools = select(reading_pool.c.name).where(reading_pool.c.member == f"user:{username}")
    query = (select(reading_pool.c.member).where(reading_pool.c.name.in_(pools))
             .where(~reading_pool.c.member.startswith("user:")))
    return sorted({row.member for row in conn.execute(query)})


def add_grant(conn: Connection, grantee: str, patient_id: str, kind: str, reason: str,
              now: float, expires_at: float) -> None:
    conn.execute(insert(access_grant).values(grantee=grantee, patient_id=patient_id, kind=kind,
                                             reason=reason, created_at=now,
                                             expires_at=expires_at))


def granted_patients(conn: Connection, grantees: list[str], now: float) -> set[str]:
    query = (select(access_grant.c.patient_id).where(access_grant.c.grantee.in_(grantees))
             .where(access_grant.c.expires_at > now))
    return {row.patient_id for row in conn.execute(query)}


def upsert_peer(conn: Connection, peer: PeerRow) -> None:
    conn.execute(delete(dimse_peer).where(dimse_peer.c.ae_title == peer.ae_title))
    conn.execute(insert(dimse_peer).values(ae_title=peer.ae_title, role=peer.role,
                                           institution_name=peer.institution_name,
                                           addresses=peer.addresses))


def get_peer(conn: Connection, ae_title: str) -> PeerRow | None:
    row = conn.execute(select(dimse_peer).where(dimse_peer.c.ae_title == ae_title)).first()
    return PeerRow(row.ae_title, row.institution_name, row.role, row.addresses) if row else None


def list_peers(conn: Connection) -> list[PeerRow]:
    return [PeerRow(r.ae_title, r.institution_name, r.role, r.addresses)
            for r in conn.execute(select(dimse_peer).order_by(dimse_peer.c.ae_title))]


def project_secret(conn: Connection, name: str, new_secret: str, now: float) -> str:
    """The project's HMAC key, created with ``new_secret`` on first use."""
    row = conn.execute(select(export_project.c.secret)
                       .where(export_project.c.name == name)).first()
    if row is not None:
        return str(row.secret)
    conn.execute(insert(export_project).values(name=name, secret=new_secret, created_at=now))
    return new_secret


def _scope_select() -> Any:
    return (select(study.c.study_instance_uid, patient.c.patient_id, study.c.institution_name,
                   facility_region.c.region)
            .join(patient, patient.c.id == study.c.patient_id_fk)
            .join(facility_region,
                  facility_region.c.institution_name == study.c.institution_name, isouter=True))


def _scopes(conn: Connection, query: Any) -> list[StudyScope]:
    return [StudyScope(r.study_instance_uid, r.patient_id or "", r.institution_name or "",
                       r.region or "") for r in conn.execute(query)]


def scopes_of_studies(conn: Connection, study_instance_uids: list[str]) -> list[StudyScope]:
    scopes: list[StudyScope] = []
    for start in range(0, len(study_instance_uids), 500):
        chunk = study_instance_uids[start:start + 500]
        scopes += _scopes(conn, _scope_select().where(study.c.study_instance_uid.in_(chunk)))
    return scopes


def scopes_of_patients(conn: Connection, patient_ids: list[str]) -> list[StudyScope]:
    return _scopes(conn, _scope_select().where(patient.c.patient_id.in_(patient_ids[:1000])))


def scope_of_series(conn: Connection, series_instance_uid: str) -> list[StudyScope]:
    study_ids = select(series.c.study_id_fk).where(
        series.c.series_instance_uid == series_instance_uid)
    return _scopes(conn, _scope_select().where(study.c.id.in_(study_ids)))


def scope_of_instance(conn: Connection, sop_instance_uid: str) -> list[StudyScope]:
    series_ids = select(instance.c.series_id_fk).where(
        instance.c.sop_instance_uid == sop_instance_uid)
    study_ids = select(series.c.study_id_fk).where(series.c.id.in_(series_ids))
    return _scopes(conn, _scope_select().where(study.c.id.in_(study_ids)))
