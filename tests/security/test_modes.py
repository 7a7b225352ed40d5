"""Open development mode on loopback (as before issue 6), closed whenever bound beyond it, and
OIDC JWT bearer tokens checked against a JWKS file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.security.conftest import ASTANA, PATIENT_A, PATIENT_B, study_uid, write_studies
from tests.servers import QoimaServer, running_server

ISSUER = "https://idp.example.kz/realms/health"
AUDIENCE = "qoima"


def _echo(port: int, calling_ae: str = "ANYONE") -> bool:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    if not assoc.is_established:
        return False
    assoc.release()
    return True


def test_loopback_without_auth_stays_open_and_audited(tmp_path: Path) -> None:
    with running_server(tmp_path / "data", env={"QOIMA_AI_ENABLED": "false"}) as server:
        response = httpx.get(f"{server.url}/dicomweb/studies",
                             headers={"X-Qoima-User": "dr.local"})
        assert response.status_code == 200
        assert _echo(server.dicom_port)
        deadline = time.monotonic() + 10
        actors: set[str] = set()
        while time.monotonic() < deadline and "dr.local" not in actors:
            events = httpx.get(f"{server.url}/api/audit/events").json()["items"]
            actors = {event["actor"] for event in events}
            time.sleep(0.1)
        assert "dr.local" in actors


def test_non_loopback_bind_refuses_without_authentication(tmp_path: Path) -> None:
    env = {"QOIMA_AI_ENABLED": "false", "QOIMA_AUTH_REQUIRED": "false"}
    with running_server(tmp_path / "data", env=env, extra_args=["--host", "0.0.0.0"]) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        for path in ("/dicomweb/studies", "/api/worklist", "/wado?requestType=WADO",
                     "/api/audit/events"):
            assert httpx.get(f"{server.url}{path}").status_code == 401, path
        assert httpx.get(f"{server.url}/", follow_redirects=False).status_code == 303
        assert not _echo(server.dicom_port)  # no peer is allowed on a fresh install
    assert "authentication enforced" in server.log()


# OIDC ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def identity_provider(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    path = tmp_path_factory.mktemp("idp") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, path


@pytest.fixture(scope="module")
def oidc_server(tmp_path_factory: pytest.TempPathFactory,
                identity_provider: tuple[Any, Path]) -> Iterator[QoimaServer]:
    root = tmp_path_factory.mktemp("oidc")
    env = {"QOIMA_AI_ENABLED": "false", "QOIMA_AUTH_REQUIRED": "true",
           "QOIMA_OIDC_JWKS": str(identity_provider[1]), "QOIMA_OIDC_ISSUER": ISSUER,
           "QOIMA_OIDC_AUDIENCE": AUDIENCE}
    server = QoimaServer(root / "data", *_ports(), env=env)
    server.qoima("import", *server.cli_args(), *map(str, write_studies(root / "studies")))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _ports() -> tuple[int, int]:
    from tests.servers import free_port

    return free_port(), free_port()


def _token(key: Any, **claims: Any) -> str:
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-123", "exp": int(time.time()) + 300,
               "preferred_username": "dr.oidc", "qoima_role": "clinician",
               "qoima_facility": ASTANA, **claims}
    return jwt.encode(payload, key, algorithm="RS256", headers={"kid": "test-key"})


def _studies(server: QoimaServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.dicomweb_url}/studies",
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_valid_jwt_gets_its_role_and_facility(oidc_server: QoimaServer,
                                              identity_provider: tuple[Any, Path]) -> None:
    response = _studies(oidc_server, _token(identity_provider[0]))
    assert response.status_code == 200
    found = {row["0020000D"]["Value"][0] for row in response.json()}
    assert found == {study_uid(PATIENT_A)}
    assert study_uid(PATIENT_B) not in found


@pytest.mark.parametrize("claims", [{"exp": 1}, {"aud": "someone-else"},
                                    {"iss": "https://evil.example"}])
def test_bad_jwt_is_401(oidc_server: QoimaServer, identity_provider: tuple[Any, Path],
                        claims: dict[str, Any]) -> None:
    assert _studies(oidc_server, _token(identity_provider[0], **claims)).status_code == 401


def test_jwt_signed_by_another_key_is_401(oidc_server: QoimaServer) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert _studies(oidc_server, _token(other)).status_code == 401


def test_jwt_without_a_role_is_401(oidc_server: QoimaServer,
                                   identity_provider: tuple[Any, Path]) -> None:
    token = _token(identity_provider[0], qoima_role="patient")
    assert _studies(oidc_server, token).status_code == 401
