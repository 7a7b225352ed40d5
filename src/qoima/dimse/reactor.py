"""pynetdicom adapted for an archive: event-driven waits in its two reactor loops, and C-STORE
sub-operations (C-GET, C-MOVE) sent from the stored file.

pynetdicom 3.0 polls: the DUL thread sleeps 1 ms whenever it finds nothing to do, and the
association thread sleeps 1 ms before every look at its queues. Each C-STORE crosses both loops
three times (request in, handler, response out), so about 2 ms of every exchange is spent
asleep. ``install`` replaces the two loops with copies that wait on the socket and on a wake-up
signal raised whenever pynetdicom queues work for them, with a 50 ms fallback so that timers
and anything not signalled are still checked as before. Two more costs go the same way: ending
an association polled the DUL's state every 10 ms (``Association.kill``), and every accepted
association deep-copied the hundreds of supported presentation contexts (about 20 ms), which
negotiation only reads; they are now shared.

C-GET and C-MOVE handlers must yield a decoded ``Dataset`` per sub-operation, which pynetdicom
then encodes again. A ``StoredFile`` passes that check but holds only the file's path: when the
peer accepted the stored transfer syntax, the dataset bytes are sent from the file as they are
(pynetdicom's chunked send, without its reading the file meta with pydicom first: the offset
comes from the meta group length Qoima writes); otherwise the file is decoded, decompressed if
need be, and converted by pynetdicom as before.

pynetdicom sends each P-DATA-TF PDU of a message through its queues and state machine one by
one; at the 16 KB a peer such as DCMTK accepts, a 512 KB CT slice is 33 of them. Outgoing
DIMSE messages are now framed here into ready P-DATA-TF PDUs (the same bytes pynetdicom would
make), read from a file and handed to the DUL about 1 MB at a time and written with one
gathering socket call (``sendmsg``, without joining them into one copy first; joined over
TLS). Incoming PDUs were read 4 KB per ``recv`` call (about 130 calls for a CT slice); they are
now read straight into one buffer of the PDU's size, and a received P-DATA-TF PDU is split into
its items in place rather than copied into PDU and item objects. Each read ends by asking Linux
for an immediate ACK (``TCP_QUICKACK``): a peer with Nagle's algorithm on sends a C-STORE's
dataset only once its command PDU is acknowledged, and a delayed ACK held every such exchange
40 ms.

A C-GET or C-MOVE runs its sub-operations on the thread that serves the request, and each
one went through three other threads: the DUL thread sent the C-STORE request, the
destination's DUL thread decoded its response and handed it back, the requestor's DUL thread
sent the pending response, with a GIL hand-over at every step. Now that thread parks the DUL
threads of both associations for the duration (``_own_dul``) and runs their loop itself
(``_dul_step``): the same state machine, queues and actions, on one thread. Anything but
P-DATA (a release, an abort) hands a DUL back to its thread. Received command sets that are
whole and hold only numbers, UIDs and AE titles (every C-STORE response) become primitives
without a pydicom dataset in between (``_decode_command``).

Accepting an association took about 2.5 ms: the association's thread started the DUL thread
and waited for it, the DUL thread read the A-ASSOCIATE-RQ and handed it over, the association
thread negotiated and handed the answer back to be sent. The association's thread now runs the
DUL itself until the answer is sent (``_accept_here``), and starts the DUL thread after; a
rejection or abort while negotiating still goes through the DUL thread as before. Making the
association's queues and copying the UIDs of its request cost less, too. Once established,
the association's thread keeps the DUL (the DUL thread parks, as under ``_own_dul``): its
reactor reads each request, serves it and sends the response with no hand-over between
threads (two per C-STORE before), until a release or abort gives the DUL to its thread.

A received C-STORE request's data set is gathered behind the File Meta header the archive
stores it with (``Part10DataSet``): the handler stores that buffer as it is, where it copied
the data set into a new one (20 ms for a 14 MB mammogram on a host with 4 KB page faults).

C-FIND handlers must yield a ``Dataset`` per match, which pynetdicom encodes with pydicom:
building and encoding it cost about 0.6 ms, more than the rest of a pending response. A
handler may yield an ``EncodedIdentifier`` (bytes it encoded itself) instead, and the service
class's ``encode`` passes those through.

The replaced functions are pynetdicom's own (MIT licence), changed only as described; they are
installed only on the 3.0 series, which pyproject pins.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import logging
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import pydicom
import pydicom.config
import pynetdicom
import pynetdicom.dimse_primitives
import pynetdicom.fsm
import pynetdicom.pdu_items
import pynetdicom.pdu_primitives
import pynetdicom.presentation
import pynetdicom.service_class
import pynetdicom.transport
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.uid import RE_VALID_UID, UID
from pynetdicom import _config as pynetdicom_config
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import _RQ_TO_MESSAGE, _RSP_TO_MESSAGE, DIMSEServiceProvider
from pynetdicom.dimse_messages import (
    _COMMAND_SET_KEYWORDS,
    _DATASET_KEYWORDS,
    _MESSAGE_TYPES,
    _MSG_TO_PRIMITVE,
)
from pynetdicom.dimse_primitives import C_CANCEL, C_STORE
from pynetdicom.dsutils import encode, split_dataset
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationSocket
from pynetdicom.utils import set_timer_resolution

from qoima.dicom.header import part10

logger = logging.getLogger(__name__)
_IDLE_WAIT_S = 0.05
_installed = False
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


class _WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue that calls ``_wake`` after every put: one of pynetdicom's, changed in place
    (``_waking``; making new queues cost a tenth of a millisecond per association)."""

    _wake: Any

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


def _waking(fresh: queue.Queue, wake: Any) -> _WakingQueue:  # type: ignore[type-arg]
    fresh.__class__ = _WakingQueue
    cast(_WakingQueue, fresh)._wake = wake
    return cast(_WakingQueue, fresh)


def _wake_dul(dul: DULServiceProvider) -> None:
    if getattr(dul, "_qoima_owner", None) is None:  # an owner runs the loop itself
        _signal_dul(dul)


def _signal_dul(dul: DULServiceProvider) -> None:
    wake_w = getattr(dul, "_qoima_wake_w", None)
    if wake_w is not None:
        with contextlib.suppress(OSError):  # already signalled (buffer full) or closed
            wake_w.send(b"\0")


def _wake_association(assoc: Association) -> None:
    wake = getattr(assoc, "_qoima_wake", None)
    if wake is not None and getattr(getattr(assoc, "dul", None), "_qoima_owner", None) is None:
        wake.set()


def _dul_init(original: Any) -> Any:
    def init(self: DULServiceProvider, assoc: Association) -> None:
        original(self, assoc)
        self._qoima_wake_w = None
        self._qoima_acted = threading.Event()
        self._qoima_owner: threading.Thread | None = None  # see ``_own_dul``
        self._qoima_parked = threading.Event()
        self.event_queue = _waking(self.event_queue, lambda: _wake_dul(self))
        self.to_provider_queue = _waking(self.to_provider_queue, lambda: _wake_dul(self))
        self.to_user_queue = _waking(self.to_user_queue,
                                     lambda: _wake_association(self.assoc))
    return init


def _dimse_init(original: Any) -> Any:
    def init(self: DIMSEServiceProvider, assoc: Association) -> None:
        original(self, assoc)
        self.msg_queue = _waking(self.msg_queue, lambda: _wake_association(self.assoc))
    return init


def _association_init(original: Any) -> Any:
    def init(self: Association, *args: Any, **kwargs: Any) -> None:
        self._qoima_wake = threading.Event()
        original(self, *args, **kwargs)
    return init


def _dul_wait(dul: DULServiceProvider, wake_r: socket.socket) -> None:
    """Sleep until the peer sends data, work is queued, or the fallback wait passes."""
    sock = dul.socket.socket if dul.socket is not None else None
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return  # decrypted bytes already buffered: select() would not see them
    readers: list[Any] = [wake_r] if sock is None else [wake_r, sock]
    try:
        select.select(readers, [], [], _IDLE_WAIT_S)
    except (OSError, ValueError):  # socket closed under us: the loop reports it
        select.select([wake_r], [], [], 0.001)
    with contextlib.suppress(OSError):
        while wake_r.recv(4096):
            pass


def _dul_run_reactor(self: DULServiceProvider) -> None:
    """pynetdicom's ``DULServiceProvider.run_reactor`` with the idle sleep made a wait, and
    parked while a serving thread runs it (``_own_dul``)."""
    self._idle_timer.start()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    self._qoima_wake_w = wake_w
    sleep = False
    try:
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
                # work queued before the thread started (by ``_accept_here``): at once
                sleep = self.event_queue.empty() and self.to_provider_queue.empty()
            if self._qoima_owner is not None:  # the owner takes what is queued
                _dul_park(self, wake_r)
                sleep = False
            if sleep:
                _dul_wait(self, wake_r)
            if self._kill_thread:
                break
            if not _dul_step(self, 0.0):
                sleep = True
    finally:
        self._qoima_wake_w = None
        wake_w.close()
        wake_r.close()
        self._qoima_acted.set()
        _wake_association(self.assoc)


def _dul_step(dul: DULServiceProvider, wait: float) -> bool:
    """``_dul_turn`` on a DUL that a serving thread owns (``_own_dul``), given back to its
    thread once the association is no longer established."""
    if not _dul_turn(dul, wait):
        return False
    if dul._qoima_owner is not None and (dul._kill_thread
                                         or dul.state_machine.current_state != "Sta6"):
        _release_dul(dul)  # releasing or aborted: the DUL thread takes the rest
    return True


def _dul_turn(dul: DULServiceProvider, wait: float) -> bool:
    """One turn of the DUL's loop: a primitive queued by the user or, waiting up to ``wait``
    seconds for it, a PDU from the peer, then one event through the state machine. False
    when there was no event. An error aborts the association, as pynetdicom does."""
    if dul.artim_timer.expired:
        dul.event_queue.put("Evt18")
    try:
        if dul._process_recv_primitive():
            pass
        elif (wait > 0 and dul.event_queue.empty() and dul.socket is not None
              and dul.socket.socket is not None):
            if select.select([dul.socket.socket], [], [], wait)[0]:
                dul._read_pdu_data()
                dul._idle_timer.restart()
        elif dul._is_transport_event():
            dul._idle_timer.restart()
    except Exception as exc:
        logger.error("Exception in DUL reactor, aborting association")
        logger.exception(exc)
        abort_pdu = A_ABORT_RQ()
        abort_pdu.source = 0x02
        abort_pdu.reason_diagnostic = 0x00
        with contextlib.suppress(OSError):
            dul.socket.send(abort_pdu.encode())  # type: ignore[union-attr]
        dul.assoc.is_aborted = True
        dul.assoc.is_established = False
        dul.assoc._kill = True
        dul._kill_thread = True
        _release_dul(dul)
        return True
    try:
        event = dul.event_queue.get(block=False)
    except queue.Empty:
        return False
    dul.state_machine.do_action(event)
    dul._qoima_acted.set()
    return True


def _dul_park(dul: DULServiceProvider, wake_r: socket.socket) -> None:
    """The DUL thread's wait while a serving thread owns the DUL: it touches nothing until
    released, killed, or the owner is gone without releasing it."""
    while not dul._kill_thread:
        owner = dul._qoima_owner
        if owner is None:
            return
        if not owner.is_alive():
            dul._qoima_owner = None
            return
        dul._qoima_parked.set()
        with contextlib.suppress(OSError, ValueError):
            select.select([wake_r], [], [], _IDLE_WAIT_S)
        with contextlib.suppress(OSError):
            while wake_r.recv(4096):
                pass


_owned = threading.local()
# events whose handlers want pynetdicom's own PDU and message objects, made on its threads
_LOW_LEVEL_EVENTS = (evt.EVT_PDU_RECV, evt.EVT_PDU_SENT, evt.EVT_DATA_RECV, evt.EVT_DATA_SENT,
                     evt.EVT_DIMSE_RECV, evt.EVT_DIMSE_SENT, evt.EVT_FSM_TRANSITION)


def _own_dul(assoc: Association) -> bool:
    """Park the association's DUL thread and let the calling thread run its loop itself
    (``_dul_step``) until ``release_owned_duls``: a C-STORE sub-operation's request, its
    response and the pending response then cross no thread. False, with nothing changed,
    where that cannot be done: over TLS, with handlers bound to PDU or DIMSE events, when
    the association is not established, or when the DUL thread does not park in a second."""
    dul = assoc.dul
    if dul._qoima_owner is threading.current_thread():
        return True
    if (not _installed or dul._qoima_owner is not None or not _may_run_elsewhere(assoc)
            or not dul.is_alive() or dul.state_machine.current_state != "Sta6"):
        return False
    dul._qoima_parked.clear()
    dul._qoima_owner = threading.current_thread()
    _signal_dul(dul)  # to its park
    if not dul._qoima_parked.wait(1.0):
        _release_dul(dul)
        return False
    if not hasattr(_owned, "duls"):
        _owned.duls = []
    _owned.duls.append(dul)
    return True


def _may_run_elsewhere(assoc: Association) -> bool:
    """Whether a thread other than the DUL's may run the association's DUL: a plain socket
    (over TLS, decrypted bytes may wait unseen by ``select``), and no handler bound to PDU
    or DIMSE events (they want pynetdicom's objects, made on its threads)."""
    dul = assoc.dul
    sock = dul.socket.socket if dul.socket is not None else None
    return (sock is not None and not isinstance(sock, ssl.SSLSocket)
            and not any(assoc.get_handlers(event) for event in _LOW_LEVEL_EVENTS))


def _release_dul(dul: DULServiceProvider) -> None:
    """Give the DUL back to its thread, which then reads the socket again."""
    if dul._qoima_owner is None:
        return
    dul._qoima_owner = None
    _wake_dul(dul)
    _wake_association(dul.assoc)  # a request that came in meanwhile waits in its queue


def release_owned_duls() -> None:
    """Release every DUL that the calling thread owns."""
    for dul in getattr(_owned, "duls", ()):
        _release_dul(dul)
    _owned.duls = []


def _owned_by_caller(dul: DULServiceProvider) -> bool:
    return getattr(dul, "_qoima_owner", None) is threading.current_thread()


def _dimse_get_msg(original: Any) -> Any:
    def get_msg(self: DIMSEServiceProvider, block: bool = False) -> tuple[int | None, Any]:
        """pynetdicom's ``get_msg``; waiting on a DUL that the caller owns (``_own_dul``),
        the caller runs the DUL until a message comes or the DIMSE timeout passes."""
        if not block:
            return cast(tuple[int | None, Any], original(self, False))
        if not _owned_by_caller(self.dul):
            # nothing can come once the connection is gone (the peer aborted while this
            # thread was about to send): pynetdicom would wait out the DIMSE timeout
            gone = self.dul.state_machine.current_state == "Sta1" or not self.dul.is_alive()
            return cast(tuple[int | None, Any], original(self, not gone))
        timeout = self.dimse_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while _owned_by_caller(self.dul):
            context_id, msg = original(self, False)
            if msg is not None:
                return context_id, msg
            remaining = _IDLE_WAIT_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None, None
            # in slices, so that a primitive queued by another thread (an abort) is seen
            _dul_step(self.dul, min(remaining, _IDLE_WAIT_S))
        # given back: the association ended (aborted, released), or another thread took over
        ended = self.dul.state_machine.current_state != "Sta6"
        return cast(tuple[int | None, Any], original(self, not ended))
    return get_msg


def _stop_dul(dul: DULServiceProvider) -> bool:
    """pynetdicom's ``stop_dul``, joining the thread instead of polling it."""
    if dul.state_machine.current_state != "Sta1":
        return False
    dul._kill_thread = True
    _wake_dul(dul)
    if dul is not threading.current_thread():
        dul.join()
    return True


def _association_run_acceptor(original: Any) -> Any:
    def run_reactor(self: Association) -> None:
        """pynetdicom's ``Association.run_reactor``; an acceptor (``_accept_here``) first
        receives the A-ASSOCIATE-RQ and sends its answer on this thread."""
        if not (self.is_acceptor and _accept_here(self)):
            original(self)
            return
        primitive = _receive_request(self, self.acse_timeout)
        if primitive is None:  # timed out, or the peer closed or aborted
            self.dul._qoima_owner = None  # nothing to send: no DUL thread either
            self.kill()
        else:
            self.requestor.primitive = primitive
            evt.trigger(self, evt.EVT_REQUESTED, {})
            # User used EVT_REQUESTED to send an A-ABORT or A-ASSOCIATE-RJ
            if not self.is_aborted and not self.is_rejected:
                self.acse.negotiate_association()
            while _owned_by_caller(self.dul) and _owner_step(self.dul, 0.0, _dul_turn):
                pass  # the A-ASSOCIATE-AC goes out
            # kept while established (a release read with the AC sent goes to the DUL thread)
            _start_dul(self, keep=self.is_established
                       and self.dul.state_machine.current_state == "Sta6")
            if self.is_established:
                with set_timer_resolution(self._timer_resolution):
                    self._run_reactor()
        # Ensure the connection is shutdown properly
        sock = cast(AssociationSocket, self.dul.socket)
        if self._server and sock.socket:
            self._server.shutdown_request(sock.socket)
    return run_reactor


def _accept_here(assoc: Association) -> bool:
    """Make the association's thread run its DUL, not yet started, until the association
    is negotiated: the request is read, answered and the answer sent without a hand-over
    between threads or waiting for the DUL thread to start (most of the 2.5 ms that an
    association took to accept). Not over TLS, nor with handlers bound to PDU or DIMSE
    events (as ``_own_dul``)."""
    if assoc._started_dul or not _may_run_elsewhere(assoc):
        return False
    assoc.dul._qoima_owner = threading.current_thread()
    assoc.dul._idle_timer.start()
    return True


def _receive_request(assoc: Association, timeout: float | None) -> Any:
    """Run the owned DUL until the peer's A-ASSOCIATE-RQ comes as a primitive; None when
    ``timeout`` seconds pass first, the connection ends (an abort, a close) or the
    association is killed (the server stops)."""
    dul = assoc.dul
    deadline = None if timeout is None else time.monotonic() + timeout
    is_open = False  # the DUL starts idle (Sta1), with the connection's Evt5 queued
    while _owned_by_caller(dul) and not assoc._kill:
        primitive = dul.receive_pdu(wait=False)
        if primitive is not None:
            return primitive
        if dul.state_machine.current_state != "Sta1":
            is_open = True
        elif is_open:
            return None  # idle again: the connection is gone (what is queued is moot)
        remaining = _IDLE_WAIT_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0:
            return None
        _owner_step(dul, min(remaining, _IDLE_WAIT_S), _dul_turn)
    return None


def _owner_step(dul: DULServiceProvider, wait: float, step: Any = _dul_step) -> bool:
    """``step`` on the association's thread that owns the DUL. An event the state machine
    refuses raised out of pynetdicom's DUL thread, which ended; it ends the DUL here too
    (its thread stops or never runs), and the association's reactor then ends the
    association as it did."""
    try:
        return bool(step(dul, wait))
    except Exception:
        logger.exception("DUL state machine error, ending the association")
        dul._kill_thread = True
        dul._qoima_owner = None
        _wake_dul(dul)
        return False


def _start_dul(assoc: Association, keep: bool = False) -> None:
    """Start the DUL's thread (``_accept_here``), and give it the DUL; with ``keep``, the
    association's thread goes on running it and the DUL thread parks until given it, as
    ``_own_dul`` has it (the association's reactor then reads and answers every message on
    its own thread)."""
    if assoc._started_dul:
        return
    if not keep:
        assoc.dul._qoima_owner = None
    assoc._started_dul = True
    assoc.dul.start()
    _wake_association(assoc)  # for what came meanwhile (an A-RELEASE-RQ read with the AC sent)


def _association_kill(self: Association) -> None:
    """pynetdicom's ``Association.kill``, woken by the DUL's state changes, not a 10 ms poll.
    A DUL that the calling thread runs (an acceptor's, while negotiating or once
    established) goes to its own thread first, started if need be, which sends what was
    queued and closes as pynetdicom's."""
    if _owned_by_caller(self.dul):
        if self._started_dul:
            _release_dul(self.dul)
        else:
            _start_dul(self)
    self._reactor_checkpoint.set()
    self._kill = True
    self.is_established = False
    self._is_paused = True
    acted = getattr(self.dul, "_qoima_acted", None)
    while True:
        if acted is not None:
            acted.clear()
        if not self.dul.is_alive() or _stop_dul(self.dul):
            return
        if acted is None:
            threading.Event().wait(0.01)
        else:
            acted.wait(0.01)


def _copy_contexts(value: Any, memo: Any = None) -> Any:
    """``deepcopy`` for the acceptor's supported contexts: a new list of the same contexts,
    which negotiation (``negotiate_as_acceptor``) only reads; nothing in Qoima changes them
    after the AE is built."""
    if isinstance(value, list) and value and isinstance(value[0], PresentationContext):
        return list(value)
    return copy.deepcopy(value, memo)


def _association_run_reactor(self: Association) -> None:
    """pynetdicom's ``Association._run_reactor`` with the 1 ms sleep made a wait. The reactor
    counts as paused while it waits, so ``send_*`` calls need not wait for it to come round."""
    self._is_paused = False
    wake = self._qoima_wake
    while not self._kill:
        self._is_paused = True
        if _owned_by_caller(self.dul):  # see ``_start_dul``
            idle = self.dimse.msg_queue.empty() and self.dul.to_user_queue.empty()
            _owner_step(self.dul, _IDLE_WAIT_S if idle else 0.0)
        else:
            wake.wait(_IDLE_WAIT_S)
            wake.clear()
        self._reactor_checkpoint.wait()
        self._is_paused = False
        if not self._reactor_checkpoint.is_set():
            # A ``send_*`` call paused the reactor after it passed the checkpoint but before
            # it marked itself running, and so saw it paused: the response that call waits
            # for must not be taken off the queue here (it was, once in a few thousand
            # C-MOVE sub-operations, and the move then stalled until the DIMSE timeout).
            wake.set()  # come round again without the idle wait, to wait at the checkpoint
            continue

        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, cast(int, context_id))

        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            logger.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return

        if self.acse.is_aborted():
            log_msg = "Association Aborted"
            if self.acse.is_aborted("a-p-abort"):
                log_msg += " (A-P-ABORT)"
            logger.info(log_msg)
            self.dul.receive_pdu(wait=False)
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return

        if not self.dul.is_alive():
            self.kill()
            return

        if self.dul.idle_timer_expired():
            logger.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self._is_paused = True
                self._reactor_checkpoint.wait()
                self.release()
                self._is_paused = False
            else:
                self.abort()
            self.kill()
            return


class StoredFile(Dataset):  # type: ignore[misc]
    """A stored instance to send in a C-STORE sub-operation, read only if it must be converted."""

    def __init__(self, path: str, sop_class_uid: str, sop_instance_uid: str,
                 transfer_syntax_uid: str) -> None:
        super().__init__()
        # plain attributes, not data elements: read by pynetdicom and ``_send_stored_file``
        # only, and made in microseconds where a data element validates its UID
        object.__setattr__(self, "SOPClassUID", UID(sop_class_uid))
        object.__setattr__(self, "SOPInstanceUID", UID(sop_instance_uid))
        self.qoima_path = path
        self.qoima_transfer_syntax = UID(transfer_syntax_uid)

    def __bool__(self) -> bool:  # pynetdicom sends a pending sub-operation's dataset if true
        return True

    def decoded(self) -> Dataset:
        ds = pydicom.dcmread(self.qoima_path)
        if self.qoima_transfer_syntax.is_compressed:
            try:
                ds.decompress(generate_instance_uid=False)
            except Exception as exc:  # codec missing or corrupt pixel data
                logger.warning("cannot decompress %s for the peer: %s", self.SOPInstanceUID, exc)
        return ds


class EncodedIdentifier(bytes):
    """A C-FIND response identifier already encoded in the context's transfer syntax, in
    place of a dataset: pynetdicom's service class (with LOG_RESPONSE_IDENTIFIERS off) only
    hands it to ``encode``, which passes these bytes through."""


def sends_encoded_identifiers() -> bool:
    """Whether a C-FIND handler may yield an ``EncodedIdentifier``."""
    return _installed and not pynetdicom_config.LOG_RESPONSE_IDENTIFIERS


def _service_class_encode(original: Any) -> Any:
    def encode(ds: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(ds, EncodedIdentifier):
            return bytes(ds)
        return original(ds, *args, **kwargs)
    return encode


def _send_c_store(original: Any) -> Any:
    def send_c_store(self: Association, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(dataset, StoredFile):
            context = _stored_context(self, dataset.SOPClassUID, dataset.qoima_transfer_syntax)
            if context is None:  # the peer takes another syntax: decode, pynetdicom converts
                dataset = dataset.decoded()
            else:
                _own_dul(self)
                return _send_stored_file(self, dataset, context.context_id, *args, **kwargs)
        return original(self, dataset, *args, **kwargs)
    return send_c_store


def _stored_context(assoc: Association, sop_class: UID, transfer_syntax: UID
                    ) -> PresentationContext | None:
    """The accepted context that takes a stored instance as it is, if any; remembered per
    association (its accepted contexts do not change)."""
    known = assoc.__dict__.setdefault("_qoima_stored_contexts", {})
    key = (sop_class, transfer_syntax)
    if key not in known:
        try:
            known[key] = assoc._get_valid_context(sop_class, transfer_syntax, "scu",
                                                  allow_conversion=False)
        except ValueError:
            known[key] = None
    return cast(PresentationContext | None, known[key])


def _retrieve_scp(original: Any) -> Any:
    def scp(self: Any, req: Any, context: PresentationContext) -> None:
        """pynetdicom's ``_get_scp`` / ``_move_scp``, run with the requestor's DUL owned by
        this thread (``_own_dul``): the pending responses go out from here. Every DUL owned
        meanwhile (the C-MOVE destination's too) is released at the end."""
        _own_dul(self.assoc)
        try:
            original(self, req, context)
        finally:
            release_owned_duls()
    return scp


def _dul_send_pdu(original: Any) -> Any:
    def send_pdu(self: DULServiceProvider, primitive: Any) -> None:
        """pynetdicom's ``send_pdu``; anything but P-DATA (a release, an abort) sent by the
        thread that owns the DUL first gives it back to the DUL thread, which waits for
        what follows (another thread's is taken by the owner's next ``_dul_step``); not so
        the answer to an association request (``_accept_here``), before that thread starts."""
        if (not isinstance(primitive, _EncodedPData) and _owned_by_caller(self)
                and self.assoc._started_dul):
            _release_dul(self)
        original(self, primitive)
    return send_pdu


def _send_stored_file(self: Association, stored: StoredFile, context_id: int, msg_id: int,
                      priority: int = 2, originator_aet: str | None = None,
                      originator_id: int | None = None) -> Dataset:
    """pynetdicom's ``send_c_store`` of a file path (its chunked send) for a stored file whose
    UIDs and transfer syntax are known, without reading the file meta with pydicom first."""
    if not self.is_established:
        raise RuntimeError("The association with a peer SCP must be established before "
                           "sending a C-STORE request")
    req = C_STORE()
    req.MessageID = msg_id
    req.Priority = priority
    req.MoveOriginatorApplicationEntityTitle = originator_aet
    req.MoveOriginatorMessageID = originator_id
    # the index's UIDs, validated when the instance was stored: set as the setters keep them
    req._affected_sop_class_uid = stored.SOPClassUID
    req._affected_sop_instance_uid = stored.SOPInstanceUID
    req._dataset_path = (stored.qoima_path, None)  # offset read when sent: one open
    self._reactor_checkpoint.clear()  # pause the reactor, as pynetdicom does
    while not self._is_paused:
        time.sleep(0.0001)
    self.dimse.send_msg(req, context_id)
    _, rsp = self.dimse.get_msg(block=True)
    self._reactor_checkpoint.set()
    if rsp is None:  # the DIMSE timeout expired: abort
        self._handle_no_response()
        return Dataset()
    return _received_status(self, rsp)


_PLAIN_STATUSES: dict[int, Dataset] = {}


def _received_status(assoc: Association, rsp: Any) -> Dataset:
    """``assoc._check_received_status(rsp)``: a valid response that carries a status and
    nothing else (no error comment, no offending element) gets a dataset made once per
    status code and shared, which the sub-operation loops only read."""
    if rsp.is_valid_response and all(getattr(rsp, keyword, None) is None
                                     for keyword in rsp.STATUS_OPTIONAL_KEYWORDS):
        status = _PLAIN_STATUSES.get(rsp.Status)
        if status is None:
            status = Dataset()
            status.Status = rsp.Status
            _PLAIN_STATUSES[rsp.Status] = status
        return status
    return cast(Dataset, assoc._check_received_status(rsp))


def _dataset_offset(fh: BinaryIO, path: str) -> int:
    """Where the dataset starts in a Part 10 file: after the preamble, "DICM" and the file
    meta group, whose length (0002,0000) Qoima always writes; pydicom reads other files."""
    head = fh.read(144)
    if head[128:132] == b"DICM" and head[132:138] == b"\x02\x00\x00\x00UL":
        return 144 + int.from_bytes(head[140:144], "little")
    return int(split_dataset(Path(path))[1])


_PDU_BATCH_BYTES = 1 << 20
_IOV_MAX = 512  # buffers per sendmsg call (Linux allows 1024)


class _EncodedPData(P_DATA):  # type: ignore[misc]
    """P-DATA-TF PDUs already encoded: a P-DATA primitive to the DUL, its own PDU to the FSM.
    Encoded as a list of buffers (PDU headers and views of the file's bytes), which the
    socket sends with one gathering call rather than after joining them into one copy."""

    def __init__(self, encoded: list[bytes | memoryview]) -> None:
        super().__init__()
        self.encoded = encoded

    def encode(self) -> list[bytes | memoryview]:
        return self.encoded


def _p_data_tf(primitive: P_DATA) -> Any:
    """The FSM's ``P_DATA_TF(primitive)`` (actions DT-1 and AR-7), passing batches through."""
    return primitive if isinstance(primitive, _EncodedPData) else P_DATA_TF(primitive)


def _dimse_send_msg(self: DIMSEServiceProvider, primitive: Any, context_id: int) -> None:
    """pynetdicom's ``DIMSEServiceProvider.send_msg``, queuing framed PDUs in 1 MB batches.
    The command set is encoded here (``command_set``) unless it holds values only pydicom
    encodes or a handler wants the message object."""
    message_class = (_RQ_TO_MESSAGE if primitive.MessageIDBeingRespondedTo is None
                     else _RSP_TO_MESSAGE)[primitive.__class__]
    command = None
    if not self.assoc.get_handlers(evt.EVT_DIMSE_SENT):
        command = command_set(message_class.__name__, primitive)
        data_keyword = _DATASET_KEYWORDS.get(message_class.__name__)
        data_set = getattr(primitive, data_keyword) if data_keyword else None
        path = getattr(primitive, "_dataset_path", None)
    if command is None:
        dimse_msg = message_class()
        dimse_msg.primitive_to_message(primitive)
        dimse_msg.context_id = context_id
        evt.trigger(self.assoc, evt.EVT_DIMSE_SENT, {"message": dimse_msg})
        command = encode(dimse_msg.command_set, True, True)  # always implicit VR LE
        data_set, path = dimse_msg.data_set, dimse_msg._data_set_path
    fragments = _fragments(context_id, 0x01, io.BytesIO(command), len(command),
                           self.maximum_pdu_size)
    with contextlib.ExitStack() as files:
        if data_set is not None:
            data = data_set.getvalue()
            if data:
                fragments = itertools.chain(fragments, _fragments(
                    context_id, 0x00, io.BytesIO(data), len(data), self.maximum_pdu_size))
        elif path is not None:  # a file, read about 1 MB at a time
            fh = files.enter_context(open(path[0], "rb"))
            offset = path[1] if path[1] is not None else _dataset_offset(fh, path[0])
            length = fh.seek(0, 2) - fh.seek(offset)
            fragments = itertools.chain(fragments, _fragments(
                context_id, 0x00, fh, length, self.maximum_pdu_size))
        _send_batched(self.dul, fragments)


def _command_layout(message_name: str) -> tuple[tuple[int, str, str], ...]:
    """(element, keyword, VR) of a message's command set in tag order, without the group
    length."""
    keywords = _COMMAND_SET_KEYWORDS[message_name.replace("_", "-")]
    tags = sorted(tag_for_keyword(k) for k in keywords if k != "CommandGroupLength")
    return tuple((tag & 0xFFFF, keyword_for_tag(tag), dictionary_VR(tag)) for tag in tags)


# message class name (C_STORE_RSP, ...) -> Command Field value
_COMMAND_FIELDS = {cls.__name__: field for field, (_name, cls) in _MESSAGE_TYPES.items()}
_COMMAND_LAYOUTS = {name: _command_layout(name) for name in _COMMAND_FIELDS}


def command_set(message_name: str, primitive: Any) -> bytes | None:
    """The command set (PS3.7 E.1, implicit VR little endian) that pynetdicom encodes for
    ``primitive`` as a ``message_name`` message (``C_STORE_RSP``, ...), byte for byte; None
    when a value is not a plain number, UID or AE title (an error comment, a list of
    attributes: pydicom encodes those)."""
    data_keyword = _DATASET_KEYWORDS.get(message_name)
    has_data_set = (bool(data_keyword and getattr(primitive, data_keyword))
                    or bool(getattr(primitive, "_dataset_path", None)))
    parts = []
    for element, keyword, vr in _COMMAND_LAYOUTS[message_name]:
        if keyword == "CommandField":
            value: Any = _COMMAND_FIELDS[message_name]
        elif keyword == "CommandDataSetType":
            value = 0x0001 if has_data_set else 0x0101
        elif not hasattr(primitive, keyword):
            parts.append(struct.pack("<HHI", 0x0000, element, 0))
            continue
        else:
            value = getattr(primitive, keyword)
            if value is None:
                continue
        if vr == "US" and type(value) is int:
            parts.append(struct.pack("<HHIH", 0x0000, element, 2, value))
        elif vr in ("UI", "AE") and isinstance(value, str) and value.isascii():
            raw = value.encode("ascii")
            if len(raw) % 2:
                raw += b"\0" if vr == "UI" else b" "
            parts.append(struct.pack("<HHI", 0x0000, element, len(raw)) + raw)
        else:
            return None
    body = b"".join(parts)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(body)) + body


def _fragments(context_id: int, control: int, stream: BinaryIO, length: int,
               max_pdu: int) -> Iterator[tuple[bytes, memoryview]]:
    """``length`` bytes of ``stream`` as P-DATA-TF PDUs of one fragment each (PS3.8 E.2),
    as (PDU and item header, fragment): fragments of ``max_pdu - 6`` bytes as pynetdicom cuts
    them (0: one fragment), read about 1 MB at a time. ``control`` is the message control
    header; the last fragment's also has bit 1 set."""
    step = max_pdu - 6 if max_pdu else max(length, 1)
    remaining = max(1, -(-length // step))
    per_read = max(1, _PDU_BATCH_BYTES // step)
    while remaining:
        count = min(per_read, remaining)
        block = memoryview(stream.read(count * step))
        for index in range(count):
            chunk = block[index * step:(index + 1) * step]
            remaining -= 1
            header = control | 0x02 if not remaining else control
            yield struct.pack(">BBIIBB", 0x04, 0, 6 + len(chunk), 2 + len(chunk), context_id,
                              header), chunk


def _send_batched(dul: DULServiceProvider, fragments: Iterator[tuple[bytes, memoryview]]
                  ) -> None:
    """Queue framed PDUs to the DUL about 1 MB at a time; on an owned DUL (``_own_dul``)
    the calling thread sends them, and then takes what the peer has sent meanwhile (a
    C-CANCEL)."""
    parts: list[bytes | memoryview] = []
    pending = 0
    for header, chunk in fragments:
        parts += (header, chunk)
        pending += len(chunk)
        if pending >= _PDU_BATCH_BYTES:
            _send_pdata(dul, parts)
            parts, pending = [], 0
    if parts:
        _send_pdata(dul, parts)
    if _owned_by_caller(dul):
        while _dul_step(dul, 0.0) and _owned_by_caller(dul):
            pass


def _send_pdata(dul: DULServiceProvider, parts: list[bytes | memoryview]) -> None:
    dul.send_pdu(_EncodedPData(parts))
    while (_owned_by_caller(dul) and not dul.to_provider_queue.empty()
           and _dul_step(dul, 0.0)):
        pass


def _socket_send(original: Any) -> Any:
    def send(self: AssociationSocket, bytestream: Any) -> None:
        """pynetdicom's ``AssociationSocket.send``; a list of buffers (``_EncodedPData``) goes
        out with ``sendmsg``, resumed where a partial send stopped."""
        if not isinstance(bytestream, list):
            original(self, bytestream)
            return
        if isinstance(self.socket, ssl.SSLSocket):  # no sendmsg over TLS
            original(self, b"".join(bytestream))
            return
        sock = cast(socket.socket, self.socket)
        buffers = [memoryview(part).cast("B") for part in bytestream]
        try:
            while buffers:
                sent = sock.sendmsg(buffers[:_IOV_MAX])
                while sent and sent >= len(buffers[0]):
                    sent -= len(buffers.pop(0))
                if sent:
                    buffers[0] = buffers[0][sent:]
            evt.trigger(self.assoc, evt.EVT_DATA_SENT, {"data": bytestream})
        except Exception:
            self.event_queue.put("Evt17")  # transport connection closed, as pynetdicom does
    return send


def _socket_recv(self: AssociationSocket, nr_bytes: int) -> bytearray:
    """pynetdicom's ``AssociationSocket.recv``: ``nr_bytes`` read into one buffer, as many as
    each ``recv_into`` call gives; fewer when the peer closes the connection."""
    sock = cast(socket.socket, self.socket)
    buffer = bytearray(nr_bytes)
    view = memoryview(buffer)
    nr_read = 0
    while nr_read < nr_bytes:
        count = sock.recv_into(view[nr_read:], nr_bytes - nr_read)
        if not count:
            break
        nr_read += count
    if _QUICKACK is not None:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    view.release()
    del buffer[nr_read:]
    return buffer


class _ReceivedPData:
    """A received P-DATA-TF PDU, as the FSM's action DT-2 uses it: its presentation data value
    items, as views into the received bytes."""

    def __init__(self, items: list[tuple[int, memoryview]]) -> None:
        self.items = items

    def to_primitive(self) -> P_DATA:
        primitive = P_DATA()
        primitive._presentation_data_value_list = self.items  # the setter wants bytes
        return primitive


# command elements (PS3.7 E.1) read by ``_decode_command``, by element number: (keyword, VR)
_PLAIN_COMMAND_ELEMENTS = {
    element & 0xFFFF: (keyword_for_tag(element), dictionary_VR(element))
    for element in (tag_for_keyword(keyword) for keywords in _COMMAND_SET_KEYWORDS.values()
                    for keyword in keywords)
    if element is not None and dictionary_VR(element) in ("US", "UI", "AE")}
_PRIMITIVES = {field: _MSG_TO_PRIMITVE[cls.__name__[:cls.__name__.rfind("_R")]]
               for field, (name, cls) in _MESSAGE_TYPES.items() if name.startswith("C-")}


# UID parameters of the C-service primitives, and where the primitives keep them
_UID_ATTRIBUTES = {"AffectedSOPClassUID": "_affected_sop_class_uid",
                   "AffectedSOPInstanceUID": "_affected_sop_instance_uid",
                   "RequestedSOPClassUID": "_requested_sop_class_uid",
                   "RequestedSOPInstanceUID": "_requested_sop_instance_uid"}


def _conformant_uid(value: str) -> bool:
    """pydicom's ``UID.is_valid`` (a non-empty one)."""
    return 0 < len(value) <= 64 and RE_VALID_UID.match(value) is not None


def _set_uid(original: Any) -> Any:
    def set_uid(value: Any, name: str, allow_empty: bool = True, allow_none: bool = True,
                validate: bool = True) -> UID | None:
        """pynetdicom's ``set_uid``; a conformant UID (every one Qoima or a sane peer sends)
        is what it would return, without pydicom validating it three times (a third of a
        small C-STORE's DIMSE time went to the UIDs of its response; of an association's
        request, those of its presentation contexts)."""
        if isinstance(value, bytes) and value.isascii():
            value = value.decode("ascii")
        if isinstance(value, str) and _conformant_uid(value):
            return value if isinstance(value, UID) else UID(value, pydicom.config.IGNORE)
        return cast(UID | None, original(value, name, allow_empty, allow_none, validate))
    return set_uid


def _decode_command(data: memoryview) -> dict[str, Any] | None:
    """A command set (implicit VR little endian) of numbers, UIDs and AE titles as
    {keyword: value}, the values pydicom decodes; None when it holds anything else (an
    error comment, an attribute list) or is malformed: pynetdicom decodes those."""
    values: dict[str, Any] = {}
    offset, end = 0, len(data)
    while offset < end:
        if offset + 8 > end:
            return None
        group, element, length = struct.unpack_from("<HHI", data, offset)
        offset += 8
        value = data[offset:offset + length]
        offset += length
        if group != 0 or offset > end:
            return None
        if element == 0x0000:
            continue
        known = _PLAIN_COMMAND_ELEMENTS.get(element)
        if known is None:
            return None
        keyword, vr = known
        if vr == "US":
            if length != 2:
                return None
            values[keyword] = value[0] | value[1] << 8
        else:
            text = bytes(value).decode("ascii", "replace")
            values[keyword] = text.rstrip("\0 ") if vr == "UI" else text.strip()
    return values


def _command_primitive(values: dict[str, Any], context_id: int) -> Any:
    """The primitive that pynetdicom's ``message_to_primitive`` makes of a decoded command
    set (UIDs already checked conformant: set as their setters would keep them)."""
    field = values["CommandField"]
    message = _PRIMITIVES[field]()
    for keyword, value in values.items():
        if keyword in _UID_ATTRIBUTES:  # checked conformant: not validated again
            setattr(message, _UID_ATTRIBUTES[keyword], UID(value, pydicom.config.IGNORE))
        elif hasattr(message, keyword):
            setattr(message, keyword, value)
    message._context_id = context_id
    return message


def _receive_primitive(original: Any) -> Any:
    def receive_primitive(self: DIMSEServiceProvider, primitive: P_DATA) -> None:
        """pynetdicom's ``receive_primitive``. A C-service message whose command set comes
        whole in the first item and holds only numbers, UIDs and AE titles (every C-STORE,
        C-ECHO, C-CANCEL and retrieve request and response) becomes its primitive without a
        pydicom dataset in between, and its data set fragments are gathered as they come:
        decoding the command set with pydicom and reading it back was a third of a C-GET
        sub-operation's time. Anything else goes to pynetdicom."""
        items = primitive.presentation_data_value_list
        pending = self.__dict__.get("_qoima_pending")
        if pending is None:
            if (self.message is not None or not items or items[0][1][0] != 0x03
                    or pynetdicom_config.STORE_RECV_CHUNKED_DATASET
                    or self.assoc.get_handlers(evt.EVT_DIMSE_RECV)):
                original(self, primitive)
                return
            context_id, command = items[0]
            values = _decode_command(memoryview(command)[1:])
            if (values is None or values.get("CommandField") not in _PRIMITIVES
                    or values.get("CommandDataSetType") is None
                    or not all(_conformant_uid(values[keyword])
                               for keyword in _UID_ATTRIBUTES if keyword in values)):
                original(self, primitive)
                return
            message = _command_primitive(values, context_id)
            keyword = _DATASET_KEYWORDS.get(_MESSAGE_TYPES[values["CommandField"]][1].__name__)
            data = _received_data_set(self.assoc, context_id, message, keyword)
            if keyword:
                setattr(message, keyword, data)
            if values["CommandDataSetType"] == 0x0101:
                _deliver(self, context_id, message)
                return
            pending = self._qoima_pending = (context_id, message, data)
            items = items[1:]
        context_id, message, data = pending
        for _item_context, fragment in items:
            if fragment[0] & 0x01:  # a command where the data set goes on: not a message
                self._qoima_pending = None
                logger.error("Received a command fragment inside a data set")
                self.dul.event_queue.put("Evt19")
                return
            data.write(fragment[1:])
            if fragment[0] & 0x02:
                self._qoima_pending = None
                _deliver(self, context_id, message)
                return
    return receive_primitive


class Part10DataSet(io.BytesIO):
    """A received C-STORE request's data set, gathered behind the File Meta header that the
    archive stores in front of it (``header.part10``, from the request's command set and
    presentation context): ``part10`` is the file to store, without copying the data set
    into it (a copy of a 14 MB mammogram cost about 3 to 20 ms). As pynetdicom sees it
    (``getvalue``, ``seek``, ``tell``, reading), it holds the data set only."""

    def __init__(self, file_meta: bytes) -> None:
        super().__init__()
        super().write(file_meta)
        self.offset = len(file_meta)

    def part10(self) -> bytes:
        return super().getvalue()

    def getvalue(self) -> bytes:
        return super().getvalue()[self.offset:]

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 0:
            pos += self.offset
        return max(0, super().seek(pos, whence) - self.offset)

    def tell(self) -> int:
        return super().tell() - self.offset


def _received_data_set(assoc: Association, context_id: int, message: Any,
                       keyword: str | None) -> io.BytesIO:
    """Where a received message's data set is gathered: a ``Part10DataSet`` for a C-STORE
    request on an accepted context, a ``BytesIO`` for anything else."""
    context = assoc._accepted_cx.get(context_id)
    if (keyword != "DataSet" or not isinstance(message, C_STORE) or context is None
            or not context.transfer_syntax):
        return io.BytesIO()
    return Part10DataSet(part10(b"", str(message.AffectedSOPClassUID),
                                str(message.AffectedSOPInstanceUID),
                                str(context.transfer_syntax[0])))


def _deliver(dimse: DIMSEServiceProvider, context_id: int, message: Any) -> None:
    """A received message to its queue, as pynetdicom's ``receive_primitive`` does."""
    if isinstance(message, C_CANCEL):
        if len(dimse.cancel_req) < 10:
            dimse.cancel_req[message.MessageIDBeingRespondedTo] = message
    else:
        dimse.msg_queue.put((context_id, message))


def _decode_pdu(original: Any) -> Any:
    def decode_pdu(self: DULServiceProvider, bytestream: bytearray) -> tuple[Any, str]:
        """pynetdicom's ``_decode_pdu``; a P-DATA-TF PDU (PS3.8 9.3.5) is split into its items
        in place, where pynetdicom copied its bytes three times into PDU and item objects
        (unless a handler wants those objects)."""
        if (bytestream[0] != 0x04 or self.assoc.get_handlers(evt.EVT_PDU_RECV)
                or self.assoc.get_handlers(evt.EVT_DATA_RECV)):
            return original(self, bytestream)
        view = memoryview(bytestream)
        items = []
        offset = 6
        while offset < len(view):
            (length,) = struct.unpack_from(">I", view, offset)
            if length < 2 or offset + 4 + length > len(view):
                raise ValueError("invalid presentation data value item length")
            items.append((view[offset + 4], view[offset + 5:offset + 4 + length]))
            offset += 4 + length
        return _ReceivedPData(items), "Evt10"
    return decode_pdu


def install() -> bool:
    """Swap in the event-driven loops (once per process). False where pynetdicom is not 3.0."""
    global _installed
    if _installed:
        return True
    if not pynetdicom.__version__.startswith("3.0."):
        logger.warning("pynetdicom %s: keeping its polling reactors", pynetdicom.__version__)
        return False
    Association.__init__ = _association_init(Association.__init__)  # type: ignore[method-assign]
    DULServiceProvider.__init__ = _dul_init(DULServiceProvider.__init__)  # type: ignore[method-assign]
    DIMSEServiceProvider.__init__ = _dimse_init(DIMSEServiceProvider.__init__)  # type: ignore[method-assign]
    DULServiceProvider.run_reactor = _dul_run_reactor  # type: ignore[method-assign]
    Association._run_reactor = _association_run_reactor  # type: ignore[method-assign]
    Association.run_reactor = _association_run_acceptor(Association.run_reactor)  # type: ignore[method-assign]
    Association.kill = _association_kill  # type: ignore[method-assign]
    pynetdicom.transport.deepcopy = _copy_contexts  # type: ignore[attr-defined]
    AssociationSocket.recv = _socket_recv  # type: ignore[method-assign]
    AssociationSocket.send = _socket_send(AssociationSocket.send)  # type: ignore[method-assign]
    Association.send_c_store = _send_c_store(Association.send_c_store)  # type: ignore[method-assign]
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True  # a path is sent from the file, unread
    DIMSEServiceProvider.send_msg = _dimse_send_msg  # type: ignore[method-assign]
    pynetdicom.fsm.P_DATA_TF = _p_data_tf  # type: ignore[attr-defined]
    DULServiceProvider._decode_pdu = _decode_pdu(DULServiceProvider._decode_pdu)  # type: ignore[method-assign]
    DIMSEServiceProvider.receive_primitive = _receive_primitive(  # type: ignore[method-assign]
        DIMSEServiceProvider.receive_primitive)
    for module in (pynetdicom.dimse_primitives, pynetdicom.pdu_primitives,
                   pynetdicom.pdu_items, pynetdicom.presentation):
        module.set_uid = _set_uid(module.set_uid)  # type: ignore[attr-defined]
    DIMSEServiceProvider.get_msg = _dimse_get_msg(DIMSEServiceProvider.get_msg)  # type: ignore[method-assign]
    DULServiceProvider.send_pdu = _dul_send_pdu(DULServiceProvider.send_pdu)  # type: ignore[method-assign]
    service_class = pynetdicom.service_class.QueryRetrieveServiceClass
    service_class._get_scp = _retrieve_scp(service_class._get_scp)  # type: ignore[method-assign]
    service_class._move_scp = _retrieve_scp(service_class._move_scp)  # type: ignore[method-assign]
    pynetdicom.service_class.encode = _service_class_encode(pynetdicom.service_class.encode)  # type: ignore[attr-defined]
    _installed = True
    return True
