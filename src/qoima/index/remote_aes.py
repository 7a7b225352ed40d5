"""Known remote application entities (C-MOVE destinations)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from qoima.errors import NotFound
from qoima.index.tables import remote_ae


@dataclass(frozen=True)
class RemoteAE:
    ae_title: str
    host: str
    port: int


def upsert_remote_ae(conn: Connection, ae: RemoteAE) -> None:
    exists = conn.execute(select(remote_ae.c.ae_title).where(
        remote_ae.c.ae_title == ae.ae_title)).first()
    if exists:
        conn.execute(update(remote_ae).where(remote_ae.c.ae_title == ae.ae_title).values(
            host=ae.host, port=ae.port))
    else:
        conn.execute(insert(remote_ae).values(ae_title=ae.ae_title, host=ae.host, port=ae.port,
                                              created_at=time.time()))


def list_remote_aes(conn: Connection) -> list[RemoteAE]:
    rows = conn.execute(select(remote_ae.c.ae_title, remote_ae.c.host, remote_ae.c.port)
                        .order_by(remote_ae.c.ae_title))
    return [RemoteAE(*row) for row in rows]


def get_remote_ae(conn: Connection, ae_title: str) -> RemoteAE:
    row = conn.execute(select(remote_ae.c.ae_title, remote_ae.c.host, remote_ae.c.port)
                       .where(remote_ae.c.ae_title == ae_title)).first()
    if row is None:
        raise NotFound(f"remote AE {ae_title!r} is not configured")
    return RemoteAE(*row)


def delete_remote_ae(conn: Connection, ae_title: str) -> None:
    result = conn.execute(delete(remote_ae).where(remote_ae.c.ae_title == ae_title))
    if result.rowcount == 0:
        raise NotFound(f"remote AE {ae_title!r} is not configured")
