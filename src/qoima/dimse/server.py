"""The pynetdicom application entity: presentation contexts, event bindings, start and stop."""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import MutableSequence
from dataclasses import dataclass

from pydicom import uid
from pynetdicom import AE, evt
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from qoima.archive import Archive
from qoima.dimse import access as dimse_access
from qoima.dimse import handlers, reactor

logger = logging.getLogger(__name__)

# Transfer syntaxes accepted for storage, as received (never re-encoded on ingest).
STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian,
    uid.ImplicitVRLittleEndian,
    uid.DeflatedExplicitVRLittleEndian,
    uid.ExplicitVRBigEndian,
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
    uid.JPEGLSLossless,
    uid.JPEGLSNearLossless,
    uid.JPEG2000Lossless,
    uid.JPEG2000,
    uid.RLELossless,
)
QUERY_TRANSFER_SYNTAXES: tuple[str, ...] = (
    uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian, uid.ExplicitVRBigEndian,
)
QUERY_RETRIEVE_SOP_CLASSES = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)


@dataclass(frozen=True)
class DimseOptions:
    ae_title: str
    host: str
    port: int
    max_pdu_bytes: int
    dimse_timeout_s: float
    network_timeout_s: float
    max_associations: int


@dataclass(frozen=True)
class SharedLoad:
    """How many associations each process sharing the listening socket is serving (an
    array in shared memory, one slot per process; ``ABSENT`` until the process accepts and
    after it stops), and this process's slot."""

    ABSENT = 1 << 30
    counts: MutableSequence[int]
    slot: int


class _AcceptingServer(ThreadedAssociationServer):  # type: ignore[misc]
    """pynetdicom's threaded server, without its thread per connection: that thread only
    made the association and started the association's own threads, then ended, so it is
    done here in the accepting thread (a thread start less per association)."""

    def process_request(self, request: socket.socket, client_address: tuple[str, int]
                        ) -> None:
        self.process_request_thread(request, client_address)


class _SharedListenerServer(_AcceptingServer):
    """A listening socket that other ``qoima serve`` worker processes accept on too (the first
    process binds it and hands it to the workers). Every process wakes for a waiting
    connection; one serving more associations than another process lets that one accept it,
    waiting until it is taken (at most ``YIELD_S``, in case that process is stuck), so
    associations spread evenly. (SO_REUSEPORT leaves the choice to a hash of the peer's
    address and port: four associations often landed 3-1 or 4-0 on two processes; a fixed
    1 ms wait per association still lost the race now and then on a loaded host.)"""

    YIELD_S = 0.05
    listen_socket: socket.socket | None = None  # set by a subclass made in ``start_server``
    load: SharedLoad  # likewise

    def server_bind(self) -> None:
        if self.listen_socket is None:
            super().server_bind()
        else:
            self.socket.close()
            self.socket = self.listen_socket
            self.server_address = self.socket.getsockname()
        self.socket.settimeout(0.0)  # another process may have taken the connection first

    def server_activate(self) -> None:
        if self.listen_socket is None:
            super().server_activate()
        self.publish_load()

    def server_close(self) -> None:
        self.load.counts[self.load.slot] = SharedLoad.ABSENT
        super().server_close()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        mine = self.publish_load()
        counts = self.load.counts
        deadline = time.monotonic() + self.YIELD_S
        while (mine > min(counts) and time.monotonic() < deadline
               and select.select([self.socket], [], [], 0)[0]):
            time.sleep(0.0005)
            mine = self.publish_load()  # an association of ours may have just ended
        request = super().get_request()  # BlockingIOError when another process took it
        counts[self.load.slot] = mine + 1
        return request

    def publish_load(self, leaving: object = None) -> int:
        """Count the associations this process serves (not ``leaving``, nor any released,
        aborted or rejected one whose thread has yet to end) and share the count."""
        mine = sum(1 for assoc in self.active_associations if assoc is not leaving
                   and not (assoc.is_released or assoc.is_aborted or assoc.is_rejected))
        self.load.counts[self.load.slot] = mine
        return mine


def storage_sop_classes() -> list[str]:
    """Every standard storage SOP class the SCP accepts."""
    return [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts]


def build_ae(options: DimseOptions) -> AE:
    reactor.install()
    ae = AE(ae_title=options.ae_title)
    ae.maximum_pdu_size = options.max_pdu_bytes
    ae.dimse_timeout = options.dimse_timeout_s
    ae.network_timeout = options.network_timeout_s
    ae.acse_timeout = options.network_timeout_s
    ae.maximum_associations = options.max_associations
    ae.require_called_aet = False  # until access control exists any calling AE may connect
    ae.add_supported_context(Verification, QUERY_TRANSFER_SYNTAXES)
    for sop_class in storage_sop_classes():
        # scu_role/scp_role: accept SCP/SCU role selection so C-GET can send back to the peer
        ae.add_supported_context(sop_class, list(STORAGE_TRANSFER_SYNTAXES),
                                 scu_role=True, scp_role=True)
    for sop_class in QUERY_RETRIEVE_SOP_CLASSES:
        ae.add_supported_context(sop_class, QUERY_TRANSFER_SYNTAXES)
    return ae


def start_server(archive: Archive, options: DimseOptions, *, is_access_enforced: bool = False,
                 ssl_context: ssl.SSLContext | None = None,
                 listen_socket: socket.socket | None = None,
                 load: SharedLoad | None = None) -> ThreadedAssociationServer:
    """Start listening in background threads; returns the server (call ``shutdown``).
    ``is_access_enforced``: only allow-listed peers (issue 6); ``ssl_context``: DICOM TLS;
    ``listen_socket``: the first process's listening socket, in a worker process; ``load``:
    given when other ``qoima serve`` processes accept on the same socket, the associations
    each of them serves."""
    ae = build_ae(options)
    bound = handlers.DimseHandlers(archive, ae_title=options.ae_title)
    events = [
        (evt.EVT_CONN_OPEN, handlers.set_no_delay),
        (evt.EVT_C_ECHO, bound.handle_c_echo),
        (evt.EVT_C_STORE, bound.handle_c_store),
        (evt.EVT_C_FIND, bound.handle_c_find),
        (evt.EVT_C_GET, bound.handle_c_get),
        (evt.EVT_C_MOVE, bound.handle_c_move),
        (evt.EVT_CONN_CLOSE, bound.log_stores),
    ]
    guarded = dimse_access.guard(events, archive, is_enforced=is_access_enforced)
    server_class: type = _AcceptingServer
    if load is not None:
        server_class = type("SharedListenerServer", (_SharedListenerServer,),
                            {"listen_socket": listen_socket, "load": load})
    server = ae.make_server((options.host, options.port), evt_handlers=guarded,
                            ssl_context=ssl_context, server_class=server_class)
    if load is not None:  # a process whose associations end is at once less busy for the others
        server.bind(evt.EVT_CONN_CLOSE, lambda event: server.publish_load(leaving=event.assoc))
    # what AE.start_server(block=False) does, with our choice of server class
    threading.Thread(target=make_target(server.serve_forever), name="dimse-acceptor",
                     daemon=True).start()
    ae._servers.append(server)  # server.shutdown() removes itself from the AE's list
    logger.info("DIMSE listening on %s:%d as %s", options.host, options.port, options.ae_title)
    return server
