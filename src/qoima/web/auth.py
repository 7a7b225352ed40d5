"""HTTP authentication and authorisation: one ASGI middleware in front of every route.

Who: a session cookie (local users, argon2 passwords), a bearer API token, or an OIDC JWT checked
against a configured JWKS. What: each path maps to an action a role may or may not do (401 when we
do not know who you are, 403 when we do and you may not). Every request that touches patient data
leaves one audit record. Open mode (loopback bind, auth off) lets anyone in as a local admin,
named by the old ``X-Qoima-User`` header, and still audits.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qoima.archive import access
from qoima.archive import audit as archive_audit
from qoima.archive.access import ROLES, Principal, UserRow
from qoima.archive.archive import Archive
from qoima.errors import Forbidden, NotFound

logger = logging.getLogger(__name__)

SESSION_COOKIE = "qoima_session"
LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_S = 15 * 60.0
_PUBLIC = re.compile(r"^/(healthz|login|logout|static/.*|api/about|api/i18n/[^/]+|favicon\.ico)$")
_STUDY_PATH = re.compile(r"^/(?:dicomweb|api)/studies/([0-9.]+)")
_SERIES_PATH = re.compile(r"^/api/series/([0-9.]+)")
_PATIENT_PATH = re.compile(r"^/api/patients/([^/]+)$")
_REPORT_PATH = re.compile(r"^/api/studies/[^/]+/(claim|report)")


@dataclass(frozen=True)
class AuthOptions:
    is_enforced: bool
    jwks: str = ""  # path or URL of the identity provider's JWKS
    issuer: str = ""
    audience: str = ""
    is_https: bool = False


def action_for(method: str, path: str) -> str | None:
    """The action a request needs; None for public paths and the UI shell."""
    if _PUBLIC.match(path):
        return None
    if path.startswith(("/dicomweb", "/wado")):
        return "store" if method == "POST" else "read"
    if not path.startswith("/api/"):
        return None  # the single-page shell; no patient data in it
    if path == "/api/facets":
        return "aggregate"
    if path.startswith("/api/audit"):
        return "audit"
    if path.startswith("/api/export"):
        return "export"
    if path == "/api/ai-feedback" or (_REPORT_PATH.match(path) and method != "GET"):
        return "report"
    if path == "/api/break-glass" or method == "GET":
        return "read"
    return "manage"  # anything unknown: deny all but admins


def audit_action(method: str, path: str) -> str | None:
    """The audit verb of a request that touches patient data (None: nothing to record)."""
    needed = action_for(method, path)
    if needed in (None, "aggregate", "audit"):
        return None if needed != "audit" else "audit"
    if needed in ("store", "report", "export"):
        return needed
    if path.rstrip("/") in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances",
                            "/api/worklist") or path.endswith(("/series", "/instances")):
        return "query"
    return "retrieve"


class LoginLimiter:
    """Failed logins per user name (LOGIN_MAX_FAILURES) and per address (ten times as many,
    so one office behind NAT is not locked out by one forgetful user) per window."""

    def __init__(self) -> None:
        self.failures: dict[str, list[float]] = defaultdict(list)

    def is_blocked(self, username: str, address: str) -> bool:
        now = time.monotonic()
        for key in (f"user:{username}", f"addr:{address}"):
            self.failures[key] = [t for t in self.failures[key] if now - t < LOGIN_WINDOW_S]
        return (len(self.failures[f"user:{username}"]) >= LOGIN_MAX_FAILURES
                or len(self.failures[f"addr:{address}"]) >= 10 * LOGIN_MAX_FAILURES)

    def failed(self, username: str, address: str) -> None:
        for key in (f"user:{username}", f"addr:{address}"):
            self.failures[key].append(time.monotonic())

    def succeeded(self, username: str) -> None:
        self.failures.pop(f"user:{username}", None)


class JwtValidator:
    """OIDC access tokens: signature from the JWKS, issuer, audience, expiry; role from claims."""

    def __init__(self, options: AuthOptions) -> None:
        self.options = options
        self.client: jwt.PyJWKClient | None = None
        self.keys: jwt.PyJWKSet | None = None
        if options.jwks.startswith(("http://", "https://")):
            self.client = jwt.PyJWKClient(options.jwks, cache_keys=True)
        elif options.jwks:
            with open(options.jwks, encoding="utf-8") as fh:
                self.keys = jwt.PyJWKSet.from_json(fh.read())

    def claims(self, token: str) -> dict[str, Any]:
        if self.client is not None:
            key: Any = self.client.get_signing_key_from_jwt(token).key
        elif self.keys is not None:
            kid = jwt.get_unverified_header(token).get("kid")
            matches = [k for k in self.keys.keys if kid is None or k.key_id == kid]
            if not matches:
                raise jwt.InvalidTokenError("unknown key id")
            key = matches[0].key
        else:
            raise jwt.InvalidTokenError("no identity provider configured")
        return jwt.decode(token, key, algorithms=["RS256", "ES256", "PS256"],
                          issuer=self.options.issuer or None,
                          audience=self.options.audience or None,
                          options={"require": ["exp", "sub"],
                                   "verify_aud": bool(self.options.audience)})


def _user_from_claims(claims: dict[str, Any]) -> UserRow:
    roles = claims.get("qoima_role") or claims.get("roles") or []
    roles = [roles] if isinstance(roles, str) else list(roles)
    role = next((r for r in roles if r in ROLES), None)
    if role is None:
        raise Forbidden("the token carries no Qoima role")
    name = str(claims.get("preferred_username") or claims["sub"])[:128]
    return UserRow(name, None, role, claims.get("qoima_facility"), claims.get("qoima_region"),
                   True)


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


class AuthMiddleware:
    """Authenticate, authorise by path, bind the principal for the archive, audit the access."""

    def __init__(self, app: ASGIApp, archive: Archive, options: AuthOptions,
                 audit_writer: archive_audit.AuditWriter) -> None:
        self.app = app
        self.archive = archive
        self.options = options
        self.audit_writer = audit_writer
        self.jwt = JwtValidator(options) if options.jwks else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        path, method = scope["path"], scope["method"]
        needed = action_for(method, path)
        try:
            principal = await self._authenticate(request)
        except Forbidden as exc:
            await _unauthenticated(path, str(exc))(scope, receive, send)
            return
        if principal is None and (needed is not None or path in ("/", "/ui")):
            await _unauthenticated(path, "authentication required")(scope, receive, send)
            return
        verb = audit_action(method, path)
        with access.acting_as(principal) as touched:
            try:
                if needed is not None and principal is not None and not principal.may(needed):
                    raise Forbidden(f"role {principal.role} may not {needed}")
                if scope_check := self._path_scope_check(path):
                    await run_in_threadpool(scope_check)
            except Forbidden as exc:
                if verb is not None:
                    await run_in_threadpool(archive_audit.record, self.archive, principal, verb,
                                            "denied", study_instance_uids=touched,
                                            detail=f"{method} {path[:200]}: {exc}")
                await JSONResponse({"error": str(exc)}, status_code=403)(scope, receive, send)
                return
            status = 500

            async def send_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await self.app(scope, receive, send_status)
            finally:
                if verb is not None:
                    outcome = ("success" if status < 400 else
                               "denied" if status in (401, 403) else "failed")
                    self.audit_writer.submit(principal, verb, outcome,
                                             study_instance_uids=set(touched),
                                             detail=f"{method} {path[:200]} -> {status}")

    def _path_scope_check(self, path: str) -> Callable[[], None] | None:
        """The check of the principal's scope over the study, series or patient in the path
        (a database read, so it runs in the thread pool); None for other paths."""
        if match := _STUDY_PATH.match(path):
            check, key = access.check_study, match.group(1)
        elif match := _SERIES_PATH.match(path):
            check, key = access.check_series, match.group(1)
        elif match := _PATIENT_PATH.match(path):
            check, key = access.check_patient, unquote(match.group(1))
        else:
            return None

        def run() -> None:
            with contextlib.suppress(NotFound):  # the route answers 404 itself
                check(self.archive, key)
        return run

    async def _authenticate(self, request: Request) -> Principal | None:
        address = _client_address(request.scope)
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
            if token.startswith("qoima_"):
                user = await run_in_threadpool(access.user_for_token, self.archive, token)
                if user is None:
                    raise Forbidden("invalid or expired token")
                return await run_in_threadpool(access.principal_for_user, self.archive, user,
                                               "token", address)
            if self.jwt is None:
                raise Forbidden("invalid token")
            try:
                claims = await run_in_threadpool(self.jwt.claims, token)
            except jwt.PyJWTError as exc:
                raise Forbidden("invalid token") from exc
            return await run_in_threadpool(access.principal_for_user, self.archive,
                                           _user_from_claims(claims), "jwt", address)
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            user = await run_in_threadpool(access.user_for_session, self.archive, session)
            if user is not None:
                return await run_in_threadpool(access.principal_for_user, self.archive, user,
                                               "session", address)
        if self.options.is_enforced:
            return None
        name = unquote(request.headers.get("x-qoima-user", "")).strip()[:128] or "local"
        return Principal(name, "admin", "open", address)


def _unauthenticated(path: str, reason: str) -> Response:
    if path in ("/", "/ui"):
        return RedirectResponse("/login", status_code=303)
    return JSONResponse({"error": reason}, status_code=401,
                        headers={"WWW-Authenticate": 'Bearer realm="qoima"'})


_LOGIN_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Qoima sign in</title>
<form method="post" action="/login" style="max-width:20em;margin:4em auto;font-family:sans-serif">
<h1>Qoima</h1>{message}
<p><label>User <input name="username" autocomplete="username" required></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"
required></label></p><p><button type="submit">Sign in</button></p></form></html>"""


def auth_routes(archive: Archive, options: AuthOptions) -> list[BaseRoute]:
    """``/login`` (form or JSON) and ``/logout``; sessions in an HttpOnly SameSite cookie."""
    limiter = LoginLimiter()

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(_LOGIN_PAGE.format(message=""))
        is_json = request.headers.get("content-type", "").startswith("application/json")
        body = await request.body()
        if is_json:
            try:
                fields = json.loads(body or b"{}")
            except ValueError:
                fields = {}
        else:
            fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        username = str(fields.get("username", ""))[:128]
        password = str(fields.get("password", ""))[:1024]
        address = _client_address(request.scope)
        who = Principal(username or "-", "unknown", "session", address)
        if limiter.is_blocked(username, address):
            await run_in_threadpool(archive_audit.record, archive, who, "login", "denied",
                                    detail="rate limited")
            return JSONResponse({"error": "too many failed logins, try again later"},
                                status_code=429, headers={"Retry-After": str(int(LOGIN_WINDOW_S))})
        try:
            user = await run_in_threadpool(access.check_password, archive, username, password)
            principal = await run_in_threadpool(access.principal_for_user, archive, user,
                                                "session", address)
        except Forbidden as exc:
            limiter.failed(username, address)
            await run_in_threadpool(archive_audit.record, archive, who, "login", "denied",
                                    detail=str(exc))
            if is_json:
                return JSONResponse({"error": "wrong username or password"}, status_code=401)
            return HTMLResponse(_LOGIN_PAGE.format(
                message=f"<p role=alert>{html.escape('Wrong username or password')}</p>"),
                status_code=401)
        limiter.succeeded(username)
        session = await run_in_threadpool(access.start_session, archive, user.username)
        await run_in_threadpool(archive_audit.record, archive, principal, "login", "success")
        response: Response = (JSONResponse({"user": user.username, "role": user.role})
                              if is_json else RedirectResponse("/", status_code=303))
        response.set_cookie(SESSION_COOKIE, session, max_age=int(access.SESSION_TTL_S),
                            httponly=True, samesite="strict", secure=options.is_https, path="/")
        return response

    async def logout(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE)
        if session:
            user = await run_in_threadpool(access.user_for_session, archive, session)
            await run_in_threadpool(access.end_session, archive, session)
            if user is not None:
                who = Principal(user.username, user.role, "session",
                                _client_address(request.scope))
                await run_in_threadpool(archive_audit.record, archive, who, "logout", "success")
        response = JSONResponse({"logged_out": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return [Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"])]
