"""HTTPS and DICOM TLS with a self-signed certificate made in the test."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from qoima.app import build_archive
from qoima.archive import access
from qoima.config import load_settings
from tests.security.conftest import PASSWORD
from tests.servers import free_port


def _self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qoima.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int, Path]]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(root)
    http_port, dicom_port = free_port(), free_port()
    archive = build_archive(load_settings(data_dir=root / "data"))
    access.add_user(archive, "tls-user", "clinician", PASSWORD, "Astana City Hospital 1")
    archive.database.dispose()
    env = {**os.environ, "QOIMA_TLS_CERTFILE": str(cert), "QOIMA_TLS_KEYFILE": str(key),
           "QOIMA_AI_ENABLED": "false"}
    log = open(root / "server.log", "wb")  # noqa: SIM115 - lives as long as the process
    process = subprocess.Popen(
        [sys.executable, "-m", "qoima", "serve", "--data-dir", str(root / "data"),
         "--http-port", str(http_port), "--dicom-port", str(dicom_port)],
        stdout=log, stderr=subprocess.STDOUT, env=env)
    context = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, (root / "server.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"https://127.0.0.1:{http_port}/healthz", verify=context,
                             timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield http_port, dicom_port, cert
    finally:
        process.terminate()
        process.wait(20)
        log.close()


def test_https_with_the_certificate(tls_server: tuple[int, int, Path]) -> None:
    http_port, _dicom_port, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    response = httpx.get(f"https://127.0.0.1:{http_port}/healthz", verify=context)
    assert response.status_code == 200


def test_plain_http_is_not_served(tls_server: tuple[int, int, Path]) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server[0]}/healthz", timeout=5)


def test_session_cookie_is_secure_over_https(tls_server: tuple[int, int, Path]) -> None:
    http_port, _dicom_port, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    response = httpx.post(f"https://127.0.0.1:{http_port}/login", verify=context,
                          json={"username": "tls-user", "password": PASSWORD})
    assert response.status_code == 200
    assert "secure" in response.headers["set-cookie"].lower()


def test_dicom_tls_echo(tls_server: tuple[int, int, Path]) -> None:
    _http_port, dicom_port, cert = tls_server
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    ae = AE(ae_title="TLSSCU")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="QOIMA",
                         tls_args=(context, "localhost"))
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0x0000


def test_dicom_without_tls_is_refused(tls_server: tuple[int, int, Path]) -> None:
    ae = AE(ae_title="PLAINSCU")
    ae.add_requested_context(Verification)
    ae.acse_timeout = 5
    ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", tls_server[1], ae_title="QOIMA")
    assert not assoc.is_established
