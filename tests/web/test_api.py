"""The web API's rules that the browser relies on: claims, signing, addenda, IIN checks."""

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.servers import QoimaServer


def _as(name: str) -> dict[str, str]:
    return {"X-Qoima-User": quote(name)}


def _unreported(server: QoimaServer) -> list[str]:
    items = httpx.get(f"{server.url}/api/worklist", timeout=10).json()["items"]
    return [item["study_instance_uid"] for item in items]


def test_second_reader_cannot_claim_a_claimed_study(demo_api_server: QoimaServer) -> None:
    uid = _unreported(demo_api_server)[-1]
    first = httpx.post(f"{demo_api_server.url}/api/studies/{uid}/claim", headers=_as("Ерлан"))
    assert first.status_code == 200
    second = httpx.post(f"{demo_api_server.url}/api/studies/{uid}/claim", headers=_as("Ольга"))
    assert second.status_code == 409
    draft = httpx.put(f"{demo_api_server.url}/api/studies/{uid}/report", headers=_as("Ольга"),
                      json={"findings": "x"})
    assert draft.status_code == 409
    httpx.request("DELETE", f"{demo_api_server.url}/api/studies/{uid}/claim", headers=_as("Ерлан"))
    again = httpx.post(f"{demo_api_server.url}/api/studies/{uid}/claim", headers=_as("Ольга"))
    assert again.status_code == 200


def test_signed_report_only_takes_addenda(demo_api_server: QoimaServer) -> None:
    uid = _unreported(demo_api_server)[-2]
    url = f"{demo_api_server.url}/api/studies/{uid}"
    reader = _as("Мадина Төлеуова")
    assert httpx.post(f"{url}/claim", headers=reader).status_code == 200
    assert httpx.put(f"{url}/report", headers=reader, json={
        "template": "normal", "findings": "Өкпе өрістері таза.", "impression": "Норма",
        "ai_agreement": "disagree"}).status_code == 200
    signed = httpx.post(f"{url}/report/sign", headers=reader, timeout=30)
    assert signed.status_code == 200
    assert uid not in _unreported(demo_api_server)
    assert httpx.post(f"{url}/claim", headers=reader).status_code == 200
    changed = httpx.put(f"{url}/report", headers=reader, json={"findings": "changed"})
    assert changed.status_code == 409
    addendum = httpx.post(f"{url}/report/addenda", headers=reader,
                          json={"text": "Салыстыру: өзгеріс жоқ."}, timeout=30)
    assert addendum.status_code == 200
    report = httpx.get(url).json()["report"]
    assert report["findings"] == "Өкпе өрістері таза."
    assert [a["text"] for a in report["addenda"]] == ["Салыстыру: өзгеріс жоқ."]
    assert addendum.json()["sr_sop_instance_uid"] != signed.json()["sr_sop_instance_uid"]
    feedback = httpx.get(f"{demo_api_server.url}/api/ai-feedback").json()["items"]
    assert any(f["study_instance_uid"] == uid and f["ai_agreement"] == "disagree"
               for f in feedback)


def test_writing_needs_a_reader_name(demo_api_server: QoimaServer) -> None:
    uid = _unreported(demo_api_server)[0]
    assert httpx.post(f"{demo_api_server.url}/api/studies/{uid}/claim").status_code == 401


def test_invalid_iin_is_rejected_with_a_reason(demo_api_server: QoimaServer) -> None:
    response = httpx.get(f"{demo_api_server.url}/api/patients/12345")
    assert response.status_code == 400
    assert response.json()["reason"] == "length"


def test_worklist_filters_by_region(demo_api_server: QoimaServer) -> None:
    region = "Атырау облысы"
    items = httpx.get(f"{demo_api_server.url}/api/worklist",
                      params={"region": region, "status": "all"}).json()["items"]
    assert items
    assert {item["region"] for item in items} == {region}
    bad = httpx.get(f"{demo_api_server.url}/api/worklist", params={"date_from": "2026-13"})
    assert bad.status_code == 400


def test_concurrent_claims_have_one_winner(demo_api_server: QoimaServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    uid = _unreported(demo_api_server)[1]
    url = f"{demo_api_server.url}/api/studies/{uid}/claim"
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(
            lambda n: httpx.post(url, headers=_as(f"reader {n}"), timeout=30).status_code,
            range(8)))
    assert sorted(statuses) == [200] + [409] * 7
