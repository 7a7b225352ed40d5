"""Role x interface matrix: each role gets exactly what it may, over DICOMweb, the REST API,
the web UI and DIMSE, and refusals carry no PHI."""

from __future__ import annotations

import httpx
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from tests.factories import make_instance, to_bytes
from tests.security.conftest import (
    PASSWORD,
    PATIENT_A,
    PATIENT_B,
    PEER_AE,
    ROLES,
    SecureServer,
    peer_ae,
    study_uid,
)

STUDY_A, STUDY_B = study_uid(PATIENT_A), study_uid(PATIENT_B)
PHI = (PATIENT_A["id"], PATIENT_A["name"], PATIENT_B["id"], PATIENT_B["name"], "IVANOVA",
       "SERIKOV")

# Which studies each role sees in a search; None: the search itself is refused (403).
VISIBLE = {"admin": {STUDY_A, STUDY_B}, "radiologist": {STUDY_B}, "clinician": {STUDY_A},
           "technician": {STUDY_A}, "analyst": None, "auditor": None, "researcher": None}


def _no_phi(text: str) -> None:
    for value in PHI:
        assert value not in text


@pytest.mark.parametrize("path", ["/dicomweb/studies", "/api/worklist?status=all",
                                  f"/dicomweb/studies/{STUDY_A}/metadata", "/api/facets",
                                  "/api/audit/events"])
def test_no_credentials_is_401(secure: SecureServer, path: str) -> None:
    response = secure.get(path, None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _no_phi(response.text)


def test_invalid_token_is_401(secure: SecureServer) -> None:
    response = secure.get("/dicomweb/studies", None,
                          headers={"Authorization": "Bearer qoima_not-a-real-token"})
    assert response.status_code == 401


def test_old_user_header_is_not_authentication(secure: SecureServer) -> None:
    response = secure.get("/api/worklist", None, headers={"X-Qoima-User": "admin"})
    assert response.status_code == 401


@pytest.mark.parametrize("role", ROLES)
def test_qido_search_is_scoped(secure: SecureServer, role: str) -> None:
    response = secure.get("/dicomweb/studies", role)
    expected = VISIBLE[role]
    if expected is None:
        assert response.status_code == 403
        _no_phi(response.text)
        return
    assert response.status_code == 200
    found = {row["0020000D"]["Value"][0] for row in response.json()}
    assert found == expected


@pytest.mark.parametrize("role", ROLES)
def test_wado_metadata_needs_scope(secure: SecureServer, role: str) -> None:
    response = secure.get(f"/dicomweb/studies/{STUDY_A}/metadata", role)
    expected = VISIBLE[role]
    if expected is not None and STUDY_A in expected:
        assert response.status_code == 200
        assert PATIENT_A["id"] in response.text
    else:
        assert response.status_code == 403
        _no_phi(response.text)


@pytest.mark.parametrize("role", ROLES)
def test_wado_rendered_instance_needs_scope(secure: SecureServer, role: str) -> None:
    instances = secure.get(f"/dicomweb/studies/{STUDY_B}/instances", "admin").json()
    sop = instances[0]["00080018"]["Value"][0]
    series = instances[0]["0020000E"]["Value"][0]
    response = secure.get(f"/dicomweb/studies/{STUDY_B}/series/{series}/instances/{sop}"
                          "/rendered", role, headers={"Accept": "image/png"})
    expected = VISIBLE[role]
    assert response.status_code == (200 if expected and STUDY_B in expected else 403)


@pytest.mark.parametrize("role", ROLES)
def test_stow_needs_store_role(secure: SecureServer, role: str) -> None:
    ds = make_instance(patient_id=PATIENT_A["id"], patient_name=PATIENT_A["name"],
                       study=f"stow-{role}", modality="CR", institution=PATIENT_A["facility"])
    boundary = "qoimaboundary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + to_bytes(ds) + f"\r\n--{boundary}--\r\n".encode())
    response = secure.post("/dicomweb/studies", role, content=body, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
    may_store = role in ("admin", "radiologist", "technician")
    assert response.status_code == (200 if may_store else 403), response.text
    if not may_store:
        _no_phi(response.text)


@pytest.mark.parametrize("role", ROLES)
def test_rest_worklist_is_scoped(secure: SecureServer, role: str) -> None:
    response = secure.get("/api/worklist?status=all", role)
    expected = VISIBLE[role]
    if expected is None:
        assert response.status_code == 403
        return
    assert response.status_code == 200
    found = {item["study_instance_uid"] for item in response.json()["items"]}
    assert found & {STUDY_A, STUDY_B} == expected


@pytest.mark.parametrize("role", ROLES)
def test_rest_study_details_need_scope(secure: SecureServer, role: str) -> None:
    response = secure.get(f"/api/studies/{STUDY_B}", role)
    expected = VISIBLE[role]
    assert response.status_code == (200 if expected and STUDY_B in expected else 403)
    if response.status_code == 403:
        _no_phi(response.text)


@pytest.mark.parametrize("role", ROLES)
def test_rest_aggregates_for_all_but_researchers(secure: SecureServer, role: str) -> None:
    response = secure.get("/api/facets", role)
    assert response.status_code == (403 if role == "researcher" else 200)


@pytest.mark.parametrize("role", ROLES)
def test_rest_audit_trail_for_auditors_only(secure: SecureServer, role: str) -> None:
    response = secure.get("/api/audit/events", role)
    assert response.status_code == (200 if role in ("admin", "auditor") else 403)


@pytest.mark.parametrize("role", ROLES)
def test_rest_export_for_researchers_only(secure: SecureServer, role: str) -> None:
    response = secure.post("/api/export", role, json={
        "project": "matrix", "query": {"StudyInstanceUID": STUDY_A}})
    assert response.status_code == (200 if role in ("admin", "researcher") else 403)
    if response.status_code == 200:
        _no_phi(response.content.decode("latin-1"))
        assert response.headers["X-Exported"] == "2"


@pytest.mark.parametrize("role", ROLES)
def test_rest_report_writes_for_radiologists(secure: SecureServer, role: str) -> None:
    response = secure.post(f"/api/studies/{STUDY_B}/claim", role)
    if role == "radiologist" or role == "admin":
        assert response.status_code == 200, response.text
        httpx.delete(f"{secure.url}/api/studies/{STUDY_B}/claim", headers=secure.auth(role),
                     timeout=10)
    else:
        assert response.status_code == 403


def test_web_ui_redirects_to_login(secure: SecureServer) -> None:
    response = secure.get("/", None)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


@pytest.mark.parametrize("role", ROLES)
def test_web_ui_session_login(secure: SecureServer, role: str) -> None:
    with httpx.Client(base_url=secure.url, timeout=30) as client:
        login = client.post("/login", data={"username": role, "password": PASSWORD})
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert client.get("/").status_code == 200
        worklist = client.get("/api/worklist?status=all")
        assert worklist.status_code == (403 if VISIBLE[role] is None else 200)


def _dimse_find(port: int, calling_ae: str) -> list[str] | None:
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="QOIMA")
    if not assoc.is_established:
        return None
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    found = []
    try:
        for status, match in assoc.send_c_find(identifier,
                                               StudyRootQueryRetrieveInformationModelFind):
            if status is not None and status.Status in (0xFF00, 0xFF01):
                found.append(str(match.StudyInstanceUID))
    finally:
        assoc.release()
    return found


def test_dimse_unknown_ae_is_rejected(secure: SecureServer) -> None:
    assert _dimse_find(secure.server.dicom_port, "STRANGER") is None


def test_dimse_allowed_peer_sees_its_facility(secure: SecureServer) -> None:
    found = _dimse_find(secure.server.dicom_port, PEER_AE)
    assert found is not None
    assert STUDY_A in found
    assert STUDY_B not in found


def test_dimse_allowed_title_from_another_address_is_rejected(secure: SecureServer) -> None:
    assert _dimse_find(secure.server.dicom_port, "ELSEWHERE") is None


@pytest.mark.parametrize("role", ROLES)
def test_dimse_find_by_role(secure: SecureServer, role: str) -> None:
    ae = AE(ae_title=peer_ae(role))
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", secure.server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = ""
    responses = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    assoc.release()
    statuses = [int(status.Status) for status, _ in responses if status is not None]
    found = {str(match.StudyInstanceUID) for status, match in responses
             if status is not None and status.Status in (0xFF00, 0xFF01)}
    if VISIBLE[role] is None:
        assert statuses == [0x0124]  # Refused: Not Authorized
        return
    # DIMSE peers are scoped to their facility (Astana); admins see everything
    assert found & {STUDY_A, STUDY_B} == ({STUDY_A, STUDY_B} if role == "admin" else {STUDY_A})


@pytest.mark.parametrize("role", ROLES)
def test_dimse_store_by_role(secure: SecureServer, role: str) -> None:
    ds = make_instance(patient_id=PATIENT_A["id"], patient_name=PATIENT_A["name"],
                       study=f"dimse-{role}", modality="CR", institution=PATIENT_A["facility"])
    ae = AE(ae_title=peer_ae(role))
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", secure.server.dicom_port, ae_title="QOIMA")
    assert assoc.is_established
    status = assoc.send_c_store(ds)
    assoc.release()
    may_store = role in ("admin", "radiologist", "technician")
    assert int(status.Status) == (0x0000 if may_store else 0x0124)


def test_server_log_has_no_phi(secure: SecureServer) -> None:
    secure.get(f"/dicomweb/studies/{STUDY_B}/metadata", "clinician")
    secure.get("/api/worklist", None)
    _no_phi(secure.server.log())
