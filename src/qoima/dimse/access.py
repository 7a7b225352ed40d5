"""DIMSE access control and auditing: per-facility AE title plus source-address allow-list,
role checks per service, and one audit record per operation (stores: one per association).

When access is not enforced (loopback, auth off) every peer is let in as an unrestricted
``ae:TITLE`` and is still audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pynetdicom import evt
from pynetdicom.events import Event, EventHandlerType

from qoima.archive import access
from qoima.archive import audit as archive_audit
from qoima.archive.access import Principal
from qoima.archive.archive import Archive
from qoima.errors import Forbidden

logger = logging.getLogger(__name__)

STATUS_NOT_AUTHORIZED = 0x0124  # PS3.7 C.5.x: Refused: Not Authorized
_REJECT_PERMANENT = 0x01
_REJECT_SOURCE_SERVICE_USER = 0x01
_REJECT_CALLING_AE_NOT_RECOGNIZED = 0x03  # PS3.8 9.3.4


def guard(events: Sequence[tuple[Any, ...]], archive: Archive, *, is_enforced: bool
          ) -> list[EventHandlerType]:
    """The server's event handlers with association checks and per-operation auditing."""
    state: dict[int, tuple[Principal, set[str], set[str]]] = {}  # by association id

    def on_requested(event: Event) -> None:
        # At EVT_REQUESTED the requestor's fields are not filled in yet: read the A-ASSOCIATE-RQ
        requestor = event.assoc.requestor
        calling = requestor.primitive.calling_ae_title if requestor.primitive else ""
        ae_title, address = str(calling or "").strip(), str(requestor.address)
        if not is_enforced:
            principal = Principal(f"ae:{ae_title}", "admin", "dimse", address)
        else:
            try:
                principal = access.principal_for_peer(archive, ae_title, address)
            except Forbidden as exc:
                logger.warning("association from %s@%s rejected: %s", ae_title, address, exc)
                archive_audit.record(archive, Principal(f"ae:{ae_title}", "unknown", "dimse",
                                                        address), "login", "denied",
                                     detail=str(exc))
                event.assoc.acse.send_reject(_REJECT_PERMANENT, _REJECT_SOURCE_SERVICE_USER,
                                             _REJECT_CALLING_AE_NOT_RECOGNIZED)
                event.assoc.kill()  # as pynetdicom's own rejection: waits until it is sent
                return
        touched = access.begin_acting_as(principal)
        state[id(event.assoc)] = (principal, touched, set())

    def on_closed(event: Event) -> None:
        entry = state.pop(id(event.assoc), None)
        if entry is not None and entry[2]:
            archive_audit.record(archive, entry[0], "store", "success",
                                 study_instance_uids=entry[2],
                                 detail=f"C-STORE association from {entry[0].name}")

    def current(event: Event) -> tuple[Principal, set[str], set[str]]:
        entry = state.get(id(event.assoc))
        if entry is None:  # a handler outside a checked association: refuse
            raise Forbidden("association not authorised")
        return entry

    def plain(handler: Callable[..., Any], needed: str) -> Callable[..., Any]:
        def wrapped(event: Event) -> Any:
            try:
                principal, touched, stored = current(event)
            except Forbidden:
                return STATUS_NOT_AUTHORIZED
            if not principal.may(needed):
                archive_audit.record(archive, principal, needed, "denied",
                                     detail=f"{needed} over DIMSE not allowed")
                return STATUS_NOT_AUTHORIZED
            touched.clear()
            status = handler(event)
            stored.update(touched)
            return status
        return wrapped

    def generator(handler: Callable[..., Iterator[Any]], verb: str, prefix: tuple[Any, ...]
                  ) -> Callable[..., Iterator[Any]]:
        def wrapped(event: Event) -> Iterator[Any]:
            try:
                principal, touched, _stored = current(event)
            except Forbidden:
                yield from (*prefix, (STATUS_NOT_AUTHORIZED, None))
                return
            if not principal.may("read"):
                archive_audit.record(archive, principal, verb, "denied",
                                     detail=f"{verb} over DIMSE not allowed")
                yield from (*prefix, (STATUS_NOT_AUTHORIZED, None))
                return
            touched.clear()
            outcome = "failed"
            try:
                yield from handler(event)
                outcome = "success"
            finally:
                archive_audit.record(archive, principal, verb, outcome,
                                     study_instance_uids=set(touched),
                                     detail=f"C-{verb.upper()} over DIMSE")
        return wrapped

    wrapped_events: list[EventHandlerType] = [(evt.EVT_REQUESTED, on_requested),
                                              (evt.EVT_RELEASED, on_closed),
                                              (evt.EVT_ABORTED, on_closed)]
    for item in events:
        event_type, handler = item[0], item[1]
        if event_type == evt.EVT_C_STORE:
            wrapped_events.append((event_type, plain(handler, "store")))
        elif event_type == evt.EVT_C_FIND:
            wrapped_events.append((event_type, generator(handler, "query", ())))
        elif event_type == evt.EVT_C_GET:
            wrapped_events.append((event_type, generator(handler, "retrieve", (0,))))
        elif event_type == evt.EVT_C_MOVE:
            wrapped_events.append((event_type, generator(handler, "retrieve", ((None, None),))))
        else:
            wrapped_events.append((event_type, handler))
    return wrapped_events
