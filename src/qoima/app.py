"""Composition root: settings -> index + storage -> archive -> DIMSE server, ASGI app, workers.

pydicom's and pynetdicom's global switches are set here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
import os
import platform
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom.config
from pynetdicom import _config as pynetdicom_config
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from qoima.archive import Archive, ArchivePolicy
from qoima.archive.access import GuardedArchive
from qoima.config import LOG_FORMAT, Settings
from qoima.index.database import Database
from qoima.storage import open_blob_store

if TYPE_CHECKING:
    from qoima.ai.worker import AiServiceOptions
    from qoima.dimse.server import SharedLoad

logger = logging.getLogger(__name__)


def configure_libraries() -> None:
    """Be lenient reading: accept what modalities send, with warnings, never crash on it."""
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.WARN
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False  # identifiers carry PHI
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    pynetdicom_config.LOG_HANDLER_LEVEL = "none"
    pynetdicom_config.CODECS = ("utf8", "iso8859_5", "latin_1")
    # two INFO lines per C-GET/C-MOVE sub-operation; the handlers log each request instead
    logging.getLogger("pynetdicom.service_class").setLevel(logging.WARNING)


def build_archive(settings: Settings, *, upgrade: bool = True) -> Archive:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = Database(settings.effective_database_url,
                        sqlite_synchronous=settings.sqlite_synchronous)
    if upgrade:
        database.upgrade()
    blobs = open_blob_store(settings.effective_storage_url)
    policy = ArchivePolicy(
        duplicate_policy=settings.duplicate_policy,
        max_instance_bytes=settings.max_instance_bytes,
        max_image_pixels=settings.max_image_pixels,
        max_sequence_depth=settings.max_sequence_depth,
        orphan_sweep_age_s=settings.orphan_sweep_age_s,
    )
    archive = GuardedArchive(database, blobs, policy)  # issue 6: role and scope checks
    if settings.audit_syslog_host:
        archive.audit_syslog_target = (settings.audit_syslog_host, settings.audit_syslog_port)
    return archive


@dataclass
class Services:
    """Background services started with the HTTP server and stopped with it."""

    starters: list[Callable[[], Callable[[], None]]] = field(default_factory=list)
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    is_ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        for starter in self.starters:
            self.stoppers.append(starter())
        # What start-up made (about 180,000 objects: SQLAlchemy, pydicom's dictionary, the
        # AE's contexts) lives as long as the process: left out of garbage collection, a full
        # collection takes well under a millisecond instead of about 70 ms with the GIL
        # held, which stalled every association and request in the process (pynetdicom
        # forces one every 60 accepted associations, Python whenever enough objects pile up).
        gc.freeze()
        self.is_ready.set()

    def stop(self) -> None:
        self.is_ready.clear()
        while self.stoppers:
            stopper = self.stoppers.pop()
            try:
                stopper()
            except Exception:
                logger.exception("error while stopping a service")


@dataclass
class Listeners:
    """The listening sockets of ``qoima serve``: bound by the first process and handed to its
    worker processes (``workers`` above 1), which accept on them too."""

    dimse: socket.socket | None = None
    http: socket.socket | None = None
    load: SharedLoad | None = None  # associations per process, shared by all of them


def _start_dimse(archive: Archive, settings: Settings,
                 listeners: Listeners) -> Callable[[], None]:
    from qoima.dimse.server import DimseOptions, SharedLoad, start_server

    if settings.workers > 1 and listeners.load is None:  # the first process
        counts = multiprocessing.get_context("spawn").RawArray(
            "i", [SharedLoad.ABSENT] * settings.workers)
        listeners.load = SharedLoad(counts, slot=0)
    server = start_server(archive, DimseOptions(
        ae_title=settings.ae_title, host=settings.host, port=settings.dicom_port,
        max_pdu_bytes=settings.max_pdu_bytes, dimse_timeout_s=settings.dimse_timeout_s,
        network_timeout_s=settings.network_timeout_s,
        max_associations=settings.max_associations),
        is_access_enforced=settings.is_auth_enforced, ssl_context=dicom_tls_context(settings),
        listen_socket=listeners.dimse, load=listeners.load)
    listeners.dimse = server.socket
    return server.shutdown


def _start_sweeper(archive: Archive, settings: Settings) -> Callable[[], None]:
    """Sweep orphaned blobs: first everything written before this start (left by a crash
    between blob write and index commit), in the background so a large archive starts fast,
    then periodically."""
    stop = threading.Event()
    started = time.time()

    def loop() -> None:
        try:
            removed = archive.sweep_orphans(age_s=max(time.time() - started, 0.0))
            logger.info("startup orphan sweep done: removed %d blobs", removed)
        except Exception:
            logger.exception("startup orphan sweep failed")
        while not stop.wait(min(settings.orphan_sweep_age_s, 3600.0)):
            try:
                archive.sweep_orphans()
            except Exception:
                logger.exception("orphan sweep failed")

    thread = threading.Thread(target=loop, name="orphan-sweeper", daemon=True)
    thread.start()
    return stop.set


def ai_service_options(settings: Settings) -> AiServiceOptions:
    """AI settings as the ai layer takes them (``qoima serve`` and ``qoima ai worker``).

    ``ai_models_dir`` and ``ai_queue_name`` are optional TOML keys (extra settings)."""
    from qoima.ai.worker import AiServiceOptions

    models_dir = settings.extra.get("ai_models_dir")
    return AiServiceOptions(
        data_dir=settings.data_dir, stable_age_s=settings.ai_stable_age_s,
        queue_url=settings.ai_queue_url,
        queue_name=str(settings.extra.get("ai_queue_name", "qoima-ai")),
        workers=settings.ai_workers, threads=settings.ai_threads,
        models_dirs=(Path(models_dir),) if models_dir else ())


def _start_ai(archive: Archive, settings: Settings) -> Callable[[], None]:
    from qoima.ai.worker import start_ai_service

    return start_ai_service(archive, ai_service_options(settings))


def build_asgi_app(archive: Archive, settings: Settings, services: Services) -> Starlette:
    """The HTTP side: health, DICOMweb, the web UI and the REST API, in one Starlette app."""
    routes: list[BaseRoute] = []
    middleware: list[Middleware] = []
    # DICOMweb viewers (OHIF) run from other origins; no credentials, so "*" is safe
    middleware.append(Middleware(CORSMiddleware, allow_origins=["*"], allow_headers=["*"],
                                 allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                                 expose_headers=["Content-Type", "Content-Length", "Warning",
                                                 "Content-Location"]))

    async def healthz(_request: Request) -> JSONResponse:
        if not services.is_ready.is_set():
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok", "ae_title": settings.ae_title})

    routes.append(Route("/healthz", healthz))
    routes.extend(_add_auth(archive, settings, middleware, services))
    for extend in _route_providers():
        routes.extend(extend(archive, settings))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        services.start()
        logger.info("Qoima ready: DICOM %s:%d (%s), HTTP %s:%d", settings.host,
                    settings.dicom_port, settings.ae_title, settings.host, settings.http_port)
        try:
            yield
        finally:
            services.stop()
            archive.database.dispose()
            logger.info("Qoima stopped")

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def _add_auth(archive: Archive, settings: Settings, middleware: list[Middleware],
              services: Services) -> list[BaseRoute]:
    """Issue 6: the authentication middleware (after CORS) and the login routes; request
    audit records are written in the background and flushed when the server stops."""
    from qoima.archive.audit import AuditWriter
    from qoima.web.auth import AuthMiddleware, AuthOptions, auth_routes
    from qoima.web.security import security_routes

    options = AuthOptions(is_enforced=settings.is_auth_enforced, jwks=settings.oidc_jwks,
                          issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                          is_https=bool(settings.tls_certfile))
    audit_writer = AuditWriter(archive)
    services.starters.append(lambda: audit_writer.close)
    middleware.append(Middleware(AuthMiddleware, archive=archive, options=options,
                                 audit_writer=audit_writer))
    return [*auth_routes(archive, options), *security_routes(archive)]


def dicom_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """DICOM TLS (PS3.15 B.1, TLS 1.2+) when a certificate is configured."""
    if not settings.tls_certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_certfile, settings.tls_keyfile or None)
    if settings.tls_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(settings.tls_ca_file)
    return context


def _route_providers() -> list[Callable[[Archive, Settings], list[BaseRoute]]]:
    """Each adapter contributes its routes; added here as the adapters are written."""
    providers: list[Callable[[Archive, Settings], list[BaseRoute]]] = []
    from qoima.dicomweb.routes import routes as dicomweb_routes

    providers.append(dicomweb_routes)
    from qoima.web.pages import web_routes

    providers.append(lambda archive, settings: web_routes(
        archive, is_demo=bool(settings.extra.get("demo"))))
    return providers


def build_server_app(settings: Settings, listeners: Listeners, *, is_worker: bool = False
                     ) -> tuple[Starlette, Services, Archive]:
    """Everything ``qoima serve`` runs, wired but not started. A worker process (``workers``
    above 1) serves DIMSE and HTTP only, on the first process's listening sockets; the
    sweeper and the AI service run once, in the first process, which also starts and stops
    the workers."""
    configure_libraries()
    archive = build_archive(settings, upgrade=not is_worker)
    services = Services()
    services.starters.append(lambda: _start_dimse(archive, settings, listeners))
    if is_worker:
        app = build_asgi_app(archive, settings, services)
        return app, services, archive
    services.starters.append(lambda: _start_sweeper(archive, settings))
    if settings.ai_enabled:
        services.starters.append(lambda: _start_ai(archive, settings))
    if settings.workers > 1:
        services.starters.append(lambda: _start_workers(settings, listeners))
    app = build_asgi_app(archive, settings, services)
    return app, services, archive


def run_server(settings: Settings, listeners: Listeners | None = None, *,
               is_worker: bool = False) -> None:
    import uvicorn

    _return_large_buffers()
    listeners = listeners or Listeners()
    app, _services, _archive = build_server_app(settings, listeners, is_worker=is_worker)
    if settings.is_auth_enforced and not is_worker:
        logger.info("authentication enforced: no patient data without a login, token or "
                    "allowed DIMSE peer")
    config = uvicorn.Config(app, host=settings.host, port=settings.http_port,
                            ssl_certfile=settings.tls_certfile or None,
                            ssl_keyfile=settings.tls_keyfile or None,
                            log_level=settings.log_level.lower(), access_log=False,
                            timeout_graceful_shutdown=10, lifespan="on")
    if settings.workers == 1:
        uvicorn.Server(config).run()
        return
    if listeners.http is None:
        listeners.http = _bind_http(settings)  # before the lifespan starts the workers
    _shared_listener_http_server()(config).run(sockets=[listeners.http])


def _bind_http(settings: Settings) -> socket.socket:
    """The HTTP listening socket for the first process to share. Its protocol is given, not
    left 0 (as uvicorn's ``bind_socket`` leaves it): asyncio turns Nagle's algorithm off
    only on connections accepted from a socket whose protocol reads as TCP, and without
    that, small responses wait for the peer's delayed ACK (about 40 ms per QIDO query)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.http_port))
    sock.set_inheritable(True)
    return sock


def _shared_listener_http_server() -> type:
    import uvicorn

    class SharedListenerHttpServer(uvicorn.Server):  # type: ignore[misc]
        """uvicorn on a listening socket that other worker processes accept on too, taking
        one connection per wake-up (asyncio takes up to the backlog at once, so one process
        could take all the connections a client opens together)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            loop: Any = asyncio.get_running_loop()
            start_serving = loop._start_serving

            def one_at_a_time(protocol_factory: Any, sock: Any, sslcontext: Any = None,
                              server: Any = None, backlog: int = 100, *args: Any) -> Any:
                return start_serving(protocol_factory, sock, sslcontext, server, 1, *args)

            loop._start_serving = one_at_a_time
            await super().startup(sockets)

    return SharedListenerHttpServer


# Worker processes ---------------------------------------------------------------------------
def _start_workers(settings: Settings, listeners: Listeners) -> Callable[[], None]:
    """Start ``workers - 1`` more processes accepting on this one's listening sockets (a
    process that is idle takes a new connection first; SO_REUSEPORT would leave it to a hash
    of the peer's port, and four connections often landed 3-1 or 4-0 on two processes);
    returns their stopper (SIGTERM, then SIGKILL after 15 s). They die with this process
    (PR_SET_PDEATHSIG), so a crashed server never leaves one holding the ports."""
    context = multiprocessing.get_context("spawn")
    assert listeners.load is not None
    processes = [context.Process(target=_run_worker,
                                 args=(settings, os.getpid(), replace(
                                     listeners, load=replace(listeners.load, slot=n))),
                                 name=f"qoima-worker-{n}", daemon=False)
                 for n in range(1, settings.workers)]
    for process in processes:
        process.start()
    logger.info("started %d worker processes: %s", len(processes),
                ", ".join(str(p.pid) for p in processes))

    def stop() -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(15)
            if process.is_alive():
                logger.warning("worker %s did not stop in 15 s; killing it", process.pid)
                process.kill()
                process.join()
    return stop


def _run_worker(settings: Settings, parent_pid: int, listeners: Listeners) -> None:
    _die_with_parent(parent_pid)
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    # the first process has loaded the demo studies (--demo) before starting this one
    extra = {key: value for key, value in settings.extra.items() if key != "demo"}
    run_server(replace(settings, extra=extra), listeners, is_worker=True)


_HUGE_PAGE_MALLOC = "glibc.malloc.hugetlb=1"


def with_huge_page_malloc() -> None:
    """Restart ``qoima serve`` once (``exec``: same process, same PID) with glibc's malloc
    asking for transparent huge pages, a tunable glibc reads only at process start. Large
    buffers come from mmap (``_return_large_buffers``) and a 10 MB one then faults in about
    5 pages instead of 2,500: storing radiographs and mammograms 4 at a time was about 25%
    slower without it (36-40 -> 27-29 CXR instances/s) and is back at that speed with it."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or not sys.executable:
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return
    os.environ["GLIBC_TUNABLES"] = (f"{tunables}:{_HUGE_PAGE_MALLOC}" if tunables
                                    else _HUGE_PAGE_MALLOC)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _return_large_buffers() -> None:
    """Memory of 4 MB and more comes from mmap and goes back to the system when freed. glibc
    raises that threshold to the size of each large block freed (up to 32 MB), after which
    an instance's buffers (several copies of a 14 MB mammogram) stay in the heap: peak RSS
    after storing the benchmark's radiographs and mammograms 4 at a time fell from about 570
    to 440 MB over two processes. CT slices (about 0.5 MB) and the 1 MB batches of outgoing
    data are unaffected.

    Smaller blocks (a CT slice's) come from the heap, whose free top glibc handed back as
    soon as it passed 128 KB: whether a C-STORE's buffers were faulted in afresh depended on
    where they lay, and about one run in two storing the benchmark's CT slices took 60 to 290
    page faults per instance (0.5 to 1 ms of system time) instead of about one. A heap keeps
    up to 4 MB free now (16 MB, tried first, kept about 60 MB more over the many threads'
    heaps of STOW-RS)."""
    with contextlib.suppress(OSError, AttributeError):  # glibc only
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD; a set value also stops the raising
        libc.mallopt(-1, 4 << 20)  # M_TRIM_THRESHOLD


def _die_with_parent(parent_pid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):  # Linux only; elsewhere workers linger
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
