"""Bad requests get a 4xx with a problem+json body and leave the archive unchanged."""

from __future__ import annotations

import httpx
import pytest

from tests.dicomweb.conftest import instance_count, multipart_body, sample, stow, to_bytes, variant
from tests.servers import QoimaServer


def _post(server: QoimaServer, body: bytes, content_type: str) -> httpx.Response:
    return httpx.post(server.dicomweb_url + "/studies", content=body,
                      headers={"Content-Type": content_type}, timeout=30)


def _typed_body(data: bytes, part_type: str) -> tuple[bytes, str]:
    body, _ = multipart_body([data], boundary="b0", part_type=part_type)
    return body, "multipart/related; boundary=b0"


def test_bad_stow_requests_are_refused_and_store_nothing(sqlite_server: QoimaServer) -> None:
    good = to_bytes(variant("ct/CT_small.dcm"))
    body, content_type = multipart_body([good, good[:-1000]])
    cases = {
        "truncated body": (body[: len(body) // 2], content_type, 400),
        "no boundary": (body, 'multipart/related; type="application/dicom"', 400),
        "wrong content type": (good, "application/json", 415),
        "form data": (body, content_type.replace("multipart/related", "multipart/form-data"),
                      415),
        "wrong request type": (body, content_type.replace("application/dicom",
                                                          "application/dicom+json"), 415),
        "wrong part type": (*_typed_body(good, "application/dicom+json"), 415),
        "garbage": (b"\x00\xff" * 500, content_type, 400),
        "empty": (b"", content_type, 400),
    }
    for name, (data, media_type, status) in cases.items():
        response = _post(sqlite_server, data, media_type)
        assert response.status_code == status, name
        assert response.headers["content-type"].startswith("application/problem+json"), name
        assert response.json()["detail"], name
    assert instance_count(sqlite_server) == 0


def test_truncated_and_preambleless_parts_fail_individually(sqlite_server: QoimaServer) -> None:
    truncated = sample("ct/693_UNCI.dcm").read_bytes()[:-4096]
    response = stow(sqlite_server, [truncated])
    assert response.status_code == 409
    assert response.json()["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
    assert instance_count(sqlite_server) == 0


@pytest.mark.parametrize("path", [
    "/studies/..%2F..%2Fetc%2Fpasswd",
    "/studies/1.2.3/series/..%2F..",
    "/studies/1.2.3%27%20OR%20%271%27=%271/metadata",
    "/studies/1.2.3/series/4.5.6/instances/7.8;DROP TABLE instance/metadata",
])
def test_path_uids_are_checked(sqlite_server: QoimaServer, path: str) -> None:
    response = httpx.get(sqlite_server.dicomweb_url + path)
    assert response.status_code in (400, 404)
    assert instance_count(sqlite_server) == 0


def test_sql_metacharacters_in_query_values_match_nothing(sqlite_server: QoimaServer) -> None:
    assert stow(sqlite_server, [to_bytes(variant("ct/CT_small.dcm"))]).status_code == 200
    for value in ["x' OR '1'='1", "%", "_", "*'; DROP TABLE study; --", "\\\\"]:
        response = httpx.get(sqlite_server.dicomweb_url + "/studies",
                             params={"PatientID": value})
        assert response.status_code == 200, value
        assert response.json() == [], value
    assert instance_count(sqlite_server) == 1


def test_huge_query_string_is_refused(sqlite_server: QoimaServer) -> None:
    response = httpx.get(sqlite_server.dicomweb_url + "/studies",
                         params={"PatientName": "A" * 12000})
    assert response.status_code in (400, 414, 431)
