"""Security fixtures: ``qoima serve`` with authentication on, two facilities' studies, one user
and one API token per role, and an allow-listed DIMSE peer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _postgres_database
from tests.factories import make_instance, uid_for
from tests.servers import QoimaServer, free_port

ROLES = ("admin", "radiologist", "clinician", "technician", "analyst", "auditor", "researcher")
ASTANA = "Astana City Hospital 1"
ALMATY = "Almaty Clinic 2"
PASSWORD = "correct horse battery staple"
# PHI of the test patients: none of it may show up in errors, logs or exports.
PATIENT_A = {"id": "870412300123", "name": "IVANOVA^ANNA", "study": "sec-study-a",
             "facility": ASTANA}
PATIENT_B = {"id": "920101400456", "name": "SERIKOV^BOLAT", "study": "sec-study-b",
             "facility": ALMATY}
PEER_AE = "ASTANA_MOD"


@dataclass
class SecureServer:
    server: QoimaServer
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, role: str | None, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        return httpx.get(f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def post(self, path: str, role: str | None, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth(role), **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def auth(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}

    def audit_events(self, after: int = 0) -> list[dict[str, Any]]:
        response = self.get(f"/api/audit/events?after={after}", "auditor")
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def wait_for_audit(self, predicate: Any, after: int = 0, timeout_s: float = 10
                       ) -> dict[str, Any]:
        """The audit record is written once the response is sent: poll for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.audit_events(after):
                if predicate(event):
                    return event
            time.sleep(0.1)
        raise AssertionError("no matching audit record")

    def last_audit_id(self) -> int:
        events = self.audit_events()
        return int(events[-1]["id"]) if events else 0


def peer_ae(role: str) -> str:
    return f"P_{role.upper()[:10]}"


def study_uid(patient: dict[str, str]) -> str:
    return uid_for(patient["study"])


def write_studies(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for patient in (PATIENT_A, PATIENT_B):
        for number in (1, 2):
            ds = make_instance(patient_id=patient["id"], patient_name=patient["name"],
                               study=patient["study"], number=number, modality="CR",
                               institution=patient["facility"],
                               accession=f"ACC{patient['id'][-4:]}")
            path = folder / f"{patient['study']}-{number}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def provision(server: QoimaServer, root: Path) -> dict[str, str]:
    """Studies (``qoima import``), then one user and token per role, a reading pool and a DIMSE
    peer through the archive's own functions (the CLI commands are tested on their own)."""
    from qoima.app import build_archive
    from qoima.archive import access
    from qoima.config import load_settings

    server.qoima("import", *server.cli_args(), str(root / "studies"))
    archive = build_archive(load_settings(data_dir=server.data_dir,
                                          database_url=server.database_url))
    facilities = {"clinician": ASTANA, "technician": ASTANA}
    tokens = {}
    for role in ROLES:
        access.add_user(archive, role, role, PASSWORD, facilities.get(role))
        tokens[role] = access.issue_token(archive, role, "tests")
    access.add_pool_member(archive, "almaty-readers", "user:radiologist")
    access.add_pool_member(archive, "almaty-readers", f"facility:{ALMATY}")
    access.add_peer(archive, PEER_AE, ["127.0.0.1/32"], "technician", ASTANA)
    for role in ROLES:  # one DIMSE peer per role, all at the Astana facility
        access.add_peer(archive, peer_ae(role), ["127.0.0.1"], role, ASTANA)
    access.add_peer(archive, "ELSEWHERE", ["10.9.9.9"], "admin", ASTANA)
    archive.database.dispose()
    return tokens


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def secure(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SecureServer]:
    """Authentication on (``auth_required``) with every role provisioned, on both backends."""
    root = tmp_path_factory.mktemp("secure")
    write_studies(root / "studies")
    env = {"QOIMA_AUTH_REQUIRED": "true", "QOIMA_AI_ENABLED": "false"}
    urls: Iterator[str | None] = (iter([None]) if request.param == "sqlite"
                                  else _postgres_database())
    for database_url in urls:
        server = QoimaServer(root / "data", free_port(), free_port(), database_url=database_url,
                             env=env)
        tokens = provision(server, root)
        server.start()
        try:
            yield SecureServer(server, tokens)
        finally:
            server.stop()
