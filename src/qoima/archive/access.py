"""Who may see what: users, roles, facilities and regions, reading pools, break-glass and consent,
and an Archive that filters every search and checks every retrieval against the caller's scope.

The caller is carried in a context variable set at each edge (HTTP middleware, DIMSE association);
no caller means the archive itself (AI worker, ``qoima import``) and nothing is filtered.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import ipaddress
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from qoima.archive.archive import Archive, StoredInstance, StoreResult
from qoima.dicom.query import Query, ReadScope
from qoima.errors import Forbidden, InvalidQuery, NotFound, QoimaError
from qoima.index import users as index_users
from qoima.index.users import PeerRow as PeerRow
from qoima.index.users import StudyScope as StudyScope
from qoima.index.users import UserRow as UserRow

logger = logging.getLogger(__name__)

ROLES = ("admin", "radiologist", "clinician", "technician", "analyst", "auditor", "researcher")
# read: patient data (query, view, retrieve); aggregate: counts and facets without PHI
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"read", "store", "report", "export", "audit", "aggregate", "manage"}),
    "radiologist": frozenset({"read", "store", "report", "aggregate"}),
    "clinician": frozenset({"read", "aggregate"}),
    "technician": frozenset({"read", "store", "aggregate"}),
    "analyst": frozenset({"aggregate"}),
    "auditor": frozenset({"audit", "aggregate"}),
    "researcher": frozenset({"export"}),
}
UNRESTRICTED_ROLES = frozenset({"admin"})
# Kazakhstan's 17 regions (oblystar) and the three cities of republican significance.
REGIONS = (
    "Abai", "Akmola", "Aktobe", "Almaty Region", "Atyrau", "East Kazakhstan", "Jambyl",
    "Jetisu", "Karaganda", "Kostanay", "Kyzylorda", "Mangystau", "North Kazakhstan", "Pavlodar",
    "Turkistan", "Ulytau", "West Kazakhstan", "Astana", "Almaty", "Shymkent",
)
SESSION_TTL_S = 8 * 3600.0
BREAK_GLASS_TTL_S = 24 * 3600.0
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a person, an integration or a DIMSE peer."""

    name: str
    role: str
    via: str  # session, token, jwt, dimse, open, cli
    source_address: str = ""
    institution_name: str | None = None
    region: str | None = None
    scope: frozenset[str] = frozenset()  # "facility:X" and "region:Y" the caller may read
    granted_patients: frozenset[str] = frozenset()  # break-glass and consent

    def may(self, action: str) -> bool:
        return action in ROLE_ACTIONS.get(self.role, frozenset())

    def may_read(self, study: StudyScope) -> bool:
        if not self.may("read"):
            return False
        if self.role in UNRESTRICTED_ROLES:
            return True
        return (f"facility:{study.institution_name}" in self.scope
                or (bool(study.region) and f"region:{study.region}" in self.scope)
                or study.patient_id in self.granted_patients)


@dataclass
class _Request:
    principal: Principal | None
    touched_studies: set[str] = field(default_factory=set)


_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "qoima_principal", default=None)


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[set[str]]:
    """Run archive calls as ``principal``; yields the set of studies they touched."""
    request = _Request(principal)
    token = _current.set(request)
    try:
        yield request.touched_studies
    finally:
        _current.reset(token)


def begin_acting_as(principal: Principal | None) -> set[str]:
    """Like ``acting_as`` for a whole thread (a DIMSE association has no ``with`` around it)."""
    request = _Request(principal)
    _current.set(request)
    return request.touched_studies


def current_principal() -> Principal | None:
    request = _current.get()
    return request.principal if request else None


def _touch(study_instance_uids: list[str] | set[str]) -> None:
    request = _current.get()
    if request is not None:
        request.touched_studies.update(u for u in study_instance_uids if u)


def require(action: str) -> Principal | None:
    """Forbidden unless the current caller (if any) may do ``action``."""
    principal = current_principal()
    if principal is not None and not principal.may(action):
        raise Forbidden(f"role {principal.role} may not {action}")
    return principal


# Users, tokens and sessions --------------------------------------------------------------------
def _check_user_fields(role: str, region: str | None) -> None:
    if role not in ROLES:
        raise InvalidQuery(f"role must be one of {', '.join(ROLES)}")
    if region and region not in REGIONS:
        raise InvalidQuery(f"region {region!r} is not one of Kazakhstan's regions")


def add_user(archive: Archive, username: str, role: str, password: str | None = None,
             institution_name: str | None = None, region: str | None = None) -> None:
    _check_user_fields(role, region)
    if not username or len(username) > 128:
        raise InvalidQuery("username must be 1 to 128 characters")
    password_hash = _hasher.hash(password) if password else None
    row = UserRow(username, password_hash, role, institution_name, region, True)
    archive.database.write(lambda conn: index_users.add_user(conn, row, time.time()))


def set_password(archive: Archive, username: str, password: str) -> None:
    password_hash = _hasher.hash(password)
    archive.database.write(
        lambda conn: index_users.set_password_hash(conn, username, password_hash))


def list_users(archive: Archive) -> list[UserRow]:
    return archive.database.read(index_users.list_users)


def has_users(archive: Archive) -> bool:
    return archive.database.read(index_users.count_users) > 0


def add_pool_member(archive: Archive, pool: str, member: str) -> None:
    """``member`` is ``user:NAME``, ``facility:INSTITUTION`` or ``region:REGION``."""
    kind, _, value = member.partition(":")
    if kind not in {"user", "facility", "region"} or not value:
        raise InvalidQuery("pool members are user:NAME, facility:NAME or region:NAME")
    if kind == "region" and value not in REGIONS:
        raise InvalidQuery(f"region {value!r} is not one of Kazakhstan's regions")
    archive.database.write(lambda conn: index_users.add_pool_member(conn, pool, member))


def principal_for_user(archive: Archive, user: UserRow, via: str, source_address: str
                       ) -> Principal:
    """The user's role with its scope: own facility and region, reading pools, grants."""
    if not user.is_active:
        raise Forbidden("account disabled")
    now = time.time()

    def work(conn: Any) -> tuple[list[str], set[str]]:
        pools = (index_users.pool_members_for(conn, user.username)
                 if user.role == "radiologist" else [])
        grantees = [f"user:{user.username}"]
        if user.institution_name:
            grantees.append(f"facility:{user.institution_name}")
        return pools, index_users.granted_patients(conn, grantees, now)

    pools, granted = archive.database.read(work)
    scope = set(pools)
    if user.institution_name:
        scope.add(f"facility:{user.institution_name}")
    return Principal(user.username, user.role, via, source_address, user.institution_name,
                     user.region, frozenset(scope), frozenset(granted))


def check_password(archive: Archive, username: str, password: str) -> UserRow:
    """The user, or Forbidden (the same message whether the name or the password is wrong)."""
    user = archive.database.read(lambda conn: index_users.get_user(conn, username))
    stored = user.password_hash if user else None
    try:
        if user is None or stored is None:
            _hasher.hash(password)  # same cost either way: no user enumeration by timing
            raise Forbidden("wrong username or password")
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError) as exc:
        raise Forbidden("wrong username or password") from exc
    if _hasher.check_needs_rehash(stored):
        set_password(archive, username, password)
    return user


def get_user(archive: Archive, username: str) -> UserRow:
    user = archive.database.read(lambda conn: index_users.get_user(conn, username))
    if user is None:
        raise NotFound(f"user {username!r} not found")
    return user


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def issue_token(archive: Archive, username: str, label: str = "",
                ttl_s: float | None = None) -> str:
    """A new bearer token for ``username``; only its sha256 is stored, so show it once."""
    get_user(archive, username)
    token = "qoima_" + secrets.token_urlsafe(32)
    now = time.time()
    expires_at = now + ttl_s if ttl_s else None
    archive.database.write(lambda conn: index_users.add_token(
        conn, _digest(token), username, label, now, expires_at))
    return token


def user_for_token(archive: Archive, token: str) -> UserRow | None:
    digest = _digest(token)
    return archive.database.read(
        lambda conn: index_users.user_for_token(conn, digest, time.time()))


def start_session(archive: Archive, username: str) -> str:
    session = secrets.token_urlsafe(32)
    now = time.time()
    archive.database.write(lambda conn: index_users.add_session(
        conn, _digest(session), username, now, now + SESSION_TTL_S))
    return session


def user_for_session(archive: Archive, session: str) -> UserRow | None:
    digest = _digest(session)
    return archive.database.read(
        lambda conn: index_users.user_for_session(conn, digest, time.time()))


def end_session(archive: Archive, session: str) -> None:
    digest = _digest(session)
    archive.database.write(lambda conn: index_users.delete_session(conn, digest))


# Break-glass and consent -----------------------------------------------------------------------
def break_glass(archive: Archive, principal: Principal, patient_id: str, reason: str) -> None:
    """Emergency access to one patient for 24 h; the reason is required and audited."""
    if not principal.may("read"):
        raise Forbidden(f"role {principal.role} may not read patient data")
    if len(reason.strip()) < 10:
        raise InvalidQuery("break-glass needs a reason of at least 10 characters")
    now = time.time()
    archive.database.write(lambda conn: index_users.add_grant(
        conn, f"user:{principal.name}", patient_id, "break_glass", reason.strip(), now,
        now + BREAK_GLASS_TTL_S))


def record_consent(archive: Archive, patient_id: str, institution_name: str, reason: str,
                   ttl_s: float = 365 * 86400.0) -> None:
    """The patient lets one facility see all their studies (for example a referral)."""
    now = time.time()
    archive.database.write(lambda conn: index_users.add_grant(
        conn, f"facility:{institution_name}", patient_id, "consent", reason, now, now + ttl_s))


# DIMSE peers -----------------------------------------------------------------------------------
def add_peer(archive: Archive, ae_title: str, addresses: list[str], role: str = "technician",
             institution_name: str | None = None) -> None:
    _check_user_fields(role, None)
    for address in addresses:
        ipaddress.ip_network(address, strict=False)  # ValueError on a typo
    peer = PeerRow(ae_title.strip(), institution_name, role, " ".join(addresses))
    archive.database.write(lambda conn: index_users.upsert_peer(conn, peer))


def list_peers(archive: Archive) -> list[PeerRow]:
    return archive.database.read(index_users.list_peers)


def principal_for_peer(archive: Archive, ae_title: str, address: str) -> Principal:
    """The DIMSE peer as a principal, or Forbidden when its AE title or address is not allowed."""
    peer = archive.database.read(lambda conn: index_users.get_peer(conn, ae_title.strip()))
    if peer is None:
        raise Forbidden(f"calling AE {ae_title.strip()!r} is not allowed")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError as exc:
        raise Forbidden(f"address {address!r} is not allowed") from exc
    if not any(ip in ipaddress.ip_network(n, strict=False) for n in peer.addresses.split()):
        raise Forbidden(f"calling AE {peer.ae_title!r} is not allowed from {address}")
    scope = frozenset({f"facility:{peer.institution_name}"} if peer.institution_name else set())
    granted = archive.database.read(lambda conn: index_users.granted_patients(
        conn, [f"facility:{peer.institution_name}"], time.time())) if peer.institution_name \
        else set()
    return Principal(f"ae:{peer.ae_title}", peer.role, "dimse", address, peer.institution_name,
                     None, scope, frozenset(granted))


# Scope checks ----------------------------------------------------------------------------------
def _scopes(archive: Archive, study_instance_uids: list[str]) -> list[StudyScope]:
    return archive.database.read(
        lambda conn: index_users.scopes_of_studies(conn, study_instance_uids))


def check_study(archive: Archive, study_instance_uid: str) -> None:
    """Forbidden unless the current caller may read the study (NotFound passes through)."""
    principal = require("read")
    _touch([study_instance_uid])
    if principal is None or principal.role in UNRESTRICTED_ROLES:
        return
    for scope in _scopes(archive, [study_instance_uid]):
        if not principal.may_read(scope):
            raise Forbidden(f"study {study_instance_uid} is outside your scope")


def check_series(archive: Archive, series_instance_uid: str) -> None:
    scopes = archive.database.read(
        lambda conn: index_users.scope_of_series(conn, series_instance_uid))
    for scope in scopes:
        check_study(archive, scope.study_instance_uid)


def check_patient(archive: Archive, patient_id: str) -> list[str]:
    """Studies of the patient the caller may read; Forbidden when there are none to read."""
    principal = require("read")
    scopes = archive.database.read(
        lambda conn: index_users.scopes_of_patients(conn, [patient_id]))
    visible = [s.study_instance_uid for s in scopes
               if principal is None or principal.may_read(s)]
    if scopes and not visible:
        raise Forbidden("this patient has no study in your scope")
    _touch(visible)
    return visible


def visible_studies(archive: Archive, study_instance_uids: list[str]) -> set[str]:
    """The subset of studies the current caller may read."""
    principal = current_principal()
    if principal is None or principal.role in UNRESTRICTED_ROLES:
        return set(study_instance_uids)
    if not principal.may("read"):
        return set()
    return {s.study_instance_uid for s in _scopes(archive, study_instance_uids)
            if principal.may_read(s)}


def read_scope(principal: Principal) -> ReadScope:
    """What ``principal`` may read, as a scope the index applies in SQL."""
    if not principal.may("read"):
        return ReadScope()
    facilities = {item.split(":", 1)[1] for item in principal.scope
                  if item.startswith("facility:")}
    regions = {item.split(":", 1)[1] for item in principal.scope if item.startswith("region:")}
    return ReadScope(frozenset(facilities), frozenset(regions), principal.granted_patients)


def current_read_scope() -> ReadScope | None:
    """The current caller's scope for SQL filters; None when unrestricted."""
    principal = current_principal()
    if principal is None or principal.role in UNRESTRICTED_ROLES:
        return None
    return read_scope(principal)


class GuardedArchive(Archive):
    """The Archive with the caller's role and scope applied to every search and retrieval."""

    audit_syslog_target: tuple[str, int] | None = None  # audit records also go there

    def find(self, query: Query) -> list[dict[str, Any]]:
        rows = super().find(self._scoped(query))
        _touch([str(r.get("StudyInstanceUID") or "") for r in rows])
        return rows

    def count(self, query: Query) -> int:
        return super().count(self._scoped(query))

    @staticmethod
    def _scoped(query: Query) -> Query:
        """The query restricted, in SQL, to the caller's scope (so paging stays exact)."""
        principal = require("read")
        if principal is None or principal.role in UNRESTRICTED_ROLES:
            return query
        return dataclasses.replace(query, scope=read_scope(principal))

    def instances_for(self, query: Query) -> list[StoredInstance]:
        require("read")
        stored = super().instances_for(query)
        for uid in sorted({s.study_instance_uid for s in stored}):
            check_study(self, uid)
        return stored

    def get_instance(self, sop_instance_uid: str) -> StoredInstance:
        require("read")
        stored = super().get_instance(sop_instance_uid)
        check_study(self, stored.study_instance_uid)
        return stored

    def store_instance(self, data: bytes, origin: str) -> StoreResult:
        require("store")
        result = super().store_instance(data, origin)
        _touch([result.study_instance_uid])
        return result

    def store_instances(self, datas: Sequence[bytes], origin: str
                        ) -> list[StoreResult | QoimaError]:
        require("store")
        results = super().store_instances(datas, origin)
        _touch([r.study_instance_uid for r in results if isinstance(r, StoreResult)])
        return results

    def delete_instance(self, sop_instance_uid: str) -> None:
        require("manage")
        super().delete_instance(sop_instance_uid)


def only_visible(archive: Archive, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (with ``study_instance_uid``) that the current caller may read; others dropped."""
    allowed = visible_studies(archive, [str(r.get("study_instance_uid")) for r in rows])
    _touch(allowed)
    return [r for r in rows if str(r.get("study_instance_uid")) in allowed]
