"""A sender that keeps Nagle's algorithm on (pynetdicom, Debian's DCMTK by default) is not held
back by Qoima's delayed ACKs."""

from __future__ import annotations

import time

from pynetdicom import AE

from tests.factories import make_instance
from tests.servers import QoimaServer


def test_c_store_from_a_sender_with_nagle_on_is_not_delayed(sqlite_server: QoimaServer) -> None:
    """Such a sender writes a C-STORE's command and its dataset as two small segments and holds
    the second until the first is acknowledged. A receiver that delays its ACK (Linux: at
    least 40 ms) stalls every exchange that long; Qoima acknowledges what it reads at once."""
    instances = [make_instance(study="nagle", number=n) for n in range(1, 16)]
    ae = AE(ae_title="NAGLE")
    ae.add_requested_context(instances[0].SOPClassUID)
    assoc = ae.associate("127.0.0.1", sqlite_server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    took = []
    try:
        for ds in instances:
            started = time.perf_counter()
            assert assoc.send_c_store(ds).Status == 0
            took.append(time.perf_counter() - started)
    finally:
        assoc.release()
    assert sorted(took)[len(took) // 2] < 0.030, took
