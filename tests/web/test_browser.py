"""The radiologist's day in a real Chromium against ``qoima serve --demo``: worklist, viewer,
heatmap, report signing (found again through QIDO-RS), patient timeline, languages."""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
from PIL import Image

from tests.servers import QoimaServer
from tests.web.conftest import ARTIFACTS, DEMO_STUDIES, screenshot, sign_in, wait_for_ai

REPORT_SERIES_DESCRIPTION = "Radiology report"


def _canvas_pixels(page: Any, index: int = 0) -> np.ndarray:
    png = page.get_by_test_id("viewer-canvas").nth(index).screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _settled_canvas_pixels(page: Any, timeout_ms: int = 5000) -> np.ndarray:
    """The canvas once two captures 100 ms apart are identical (no redraw under way)."""
    previous = _canvas_pixels(page)
    for _ in range(timeout_ms // 100):
        page.wait_for_timeout(100)
        current = _canvas_pixels(page)
        if np.array_equal(current, previous):
            return current
        previous = current
    return previous


def _open_first_study(page: Any, server: QoimaServer, reader: str) -> str:
    sign_in(page, server, reader)
    page.locator("tr.row:has(.badge.new)").first.click()  # one nobody else has claimed
    page.wait_for_url("**/#/study/*")
    page.locator("[data-testid=viewer-canvas][data-rendered='1']").first.wait_for()
    return str(page.url.rsplit("/", 1)[1])


def test_worklist_shows_unreported_studies_ai_first(page: Any, demo_server: QoimaServer) -> None:
    wait_for_ai(demo_server)
    unreported = httpx.get(f"{demo_server.url}/api/worklist", timeout=10).json()["items"]
    assert len(unreported) >= DEMO_STUDIES - 3
    sign_in(page, demo_server, "Айгүл Серікова")
    page.locator("tr.row").nth(len(unreported) - 1).wait_for()
    shown = page.locator("tr.row").evaluate_all(
        "rows => rows.map(r => [r.dataset.study, +r.dataset.priority, +r.dataset.created])")
    assert {uid for uid, _, _ in shown} == {item["study_instance_uid"] for item in unreported}
    keys = [(-priority, created) for _, priority, created in shown]
    assert keys == sorted(keys), "not sorted by AI priority, then waiting time"
    assert "Серікова Айгүл" in page.locator("table.worklist").inner_text()
    path = screenshot(page, "worklist.png")
    assert path.stat().st_size > 10000


def test_viewer_renders_image_and_window_level_changes_it(page: Any,
                                                          demo_server: QoimaServer) -> None:
    _open_first_study(page, demo_server, "Reader One")
    before = _settled_canvas_pixels(page)  # the layout may still be settling (report panel)
    grey = before.mean(axis=2)
    assert grey.std() > 20, "the viewer canvas is (nearly) uniform: nothing rendered"
    assert (grey > 128).mean() > 0.05
    assert (grey < 64).mean() > 0.05
    box = page.get_by_test_id("viewer-canvas").first.bounding_box()
    page.mouse.move(box["x"] + 200, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 320, box["y"] + 260, steps=5)
    page.mouse.up()
    after = _settled_canvas_pixels(page)
    assert after.shape == before.shape, "the viewer changed size during the drag"
    assert np.abs(after - before).mean() > 3, "window/level drag did not change the image"
    screenshot(page, "viewer.png")


def test_heatmap_toggle_overlays_the_ai_heatmap(page: Any, demo_server: QoimaServer) -> None:
    wait_for_ai(demo_server)
    _open_first_study(page, demo_server, "Reader Two")
    toggle = page.get_by_test_id("heatmap-toggle")
    assert toggle.is_enabled()
    before = _settled_canvas_pixels(page)
    toggle.click()
    page.locator("[data-testid=viewer-canvas][data-heatmap='on']").first.wait_for()
    page.wait_for_timeout(300)
    after = _canvas_pixels(page)
    screenshot(page, "heatmap.png")
    # the overlay is red-to-yellow: red rises above blue where the heatmap is
    red_minus_blue = (after[..., 0] - after[..., 2]) - (before[..., 0] - before[..., 2])
    assert red_minus_blue.max() > 30
    toggle.click()
    page.locator("[data-testid=viewer-canvas][data-heatmap='off']").first.wait_for()
    assert np.abs(_settled_canvas_pixels(page) - before).mean() < 1


def test_length_measurement_is_drawn(page: Any, demo_server: QoimaServer) -> None:
    _open_first_study(page, demo_server, "Reader Three")
    page.locator("button[data-tool='length']").click()
    before = _canvas_pixels(page)
    box = page.get_by_test_id("viewer-canvas").first.bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 300)
    page.mouse.down()
    page.mouse.move(box["x"] + 300, box["y"] + 300, steps=5)
    page.mouse.up()
    page.mouse.move(box["x"] + 20, box["y"] + 20)  # away from the line: not highlighted
    page.wait_for_timeout(300)
    after = _canvas_pixels(page)
    screenshot(page, "length.png")
    # the line and its label are coloured; the radiograph is grey
    colour = np.abs(after[..., 0] - after[..., 2]) + np.abs(after[..., 1] - after[..., 2])
    was_colour = np.abs(before[..., 0] - before[..., 2]) + np.abs(before[..., 1] - before[..., 2])
    assert (colour > 120).sum() > (was_colour > 120).sum() + 100


def test_signed_report_is_an_sr_found_through_qido(page: Any, demo_server: QoimaServer) -> None:
    wait_for_ai(demo_server)
    uid = _open_first_study(page, demo_server, "Дана Ахметова")
    page.get_by_test_id("template").select_option("pneumonia")
    page.get_by_test_id("findings").fill("Оң жақ төменгі бөлікте инфильтрация.")
    page.get_by_test_id("ai-agree").check()
    page.get_by_test_id("sign").click()
    page.get_by_test_id("signed-findings").wait_for()
    screenshot(page, "signed-report.png")

    series = httpx.get(f"{demo_server.dicomweb_url}/studies/{uid}/series",
                       params={"Modality": "SR"}, timeout=10).json()
    reports = [s for s in series
               if s.get("0008103E", {}).get("Value") == [REPORT_SERIES_DESCRIPTION]]
    assert len(reports) == 1
    series_uid = reports[0]["0020000E"]["Value"][0]
    instances = httpx.get(f"{demo_server.dicomweb_url}/studies/{uid}/series/{series_uid}"
                          "/instances", timeout=10).json()
    sop_uid = instances[0]["00080018"]["Value"][0]
    response = httpx.get(f"{demo_server.dicomweb_url}/studies/{uid}/series/{series_uid}"
                         f"/instances/{sop_uid}", headers={"Accept": "multipart/related; "
                         'type="application/dicom"; transfer-syntax=*'}, timeout=10)
    body = response.content
    sr = pydicom.dcmread(io.BytesIO(body[body.index(b"\r\n\r\n") + 4:]))
    texts = [item.TextValue for item in sr.ContentSequence if item.ValueType == "TEXT"]
    assert "Оң жақ төменгі бөлікте инфильтрация." in texts
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Ахметова^Дана"
    assert sr.VerificationFlag == "VERIFIED"
    row = httpx.get(f"{demo_server.url}/api/studies/{uid}", timeout=10).json()
    assert row["report"]["ai_agreement"] == "agree"
    assert row["report"]["sr_sop_instance_uid"] == sop_uid


def test_patient_page_shows_timeline_across_facilities(page: Any,
                                                       demo_server: QoimaServer) -> None:
    items = httpx.get(f"{demo_server.url}/api/worklist", params={"status": "all"},
                      timeout=10).json()["items"]
    by_patient: dict[str, set[str]] = {}
    for item in items:
        by_patient.setdefault(item["patient_id"], set()).add(item["institution_name"])
    iin = next(p for p, facilities in by_patient.items() if len(facilities) > 1)
    sign_in(page, demo_server, "Clinician", f"#/patient/{iin}")
    page.get_by_test_id("timeline-item").nth(1).wait_for()
    text = page.locator(".timeline").inner_text()
    assert all(facility in text for facility in by_patient[iin])
    page.wait_for_function("[...document.querySelectorAll('img.thumb')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "patient.png")


def test_invalid_iin_gets_a_clear_message(page: Any, demo_server: QoimaServer) -> None:
    sign_in(page, demo_server, "Clinician", "#/patient/900515301235")
    message = page.get_by_test_id("iin-error")
    assert "check digit" in message.inner_text()


def test_language_switch_to_kazakh_and_russian(page: Any, demo_server: QoimaServer) -> None:
    sign_in(page, demo_server, "Reader Four")
    page.locator("tr.row").first.wait_for()
    page.get_by_test_id("language").select_option("kk")
    page.get_by_text("Сипатталмаған зерттеулер").wait_for()
    page.get_by_test_id("language").select_option("ru")
    page.get_by_text("Неописанные исследования").wait_for()
    page.locator("tr.row").first.wait_for()
    assert "нояб" in page.locator("table.worklist").inner_text()  # Russian month names
    assert ARTIFACTS.exists()


def _store_ct(server: QoimaServer, samples: Path) -> str:
    from dicomweb_client.api import DICOMwebClient

    folder = samples / "ct_series_3slice"
    datasets = [pydicom.dcmread(path) for path in sorted(folder.glob("*.dcm"))]
    DICOMwebClient(server.dicomweb_url).store_instances(datasets)  # again: ignored as identical
    return str(datasets[0].StudyInstanceUID)


def test_stack_scrolls_through_a_ct_series(page: Any, demo_server: QoimaServer,
                                           samples: Path) -> None:
    uid = _store_ct(demo_server, samples)
    sign_in(page, demo_server, "Reader Five", f"#/study/{uid}")
    page.locator("[data-testid=viewer-canvas][data-rendered='1']").first.wait_for()
    position = page.get_by_test_id("stack-position")
    page.wait_for_function("document.querySelector('[data-testid=stack-position]')"
                           ".textContent === '1 / 3'")
    first = _canvas_pixels(page)
    assert first.mean(axis=2).std() > 10
    page.keyboard.press("ArrowDown")
    page.wait_for_function("document.querySelector('[data-testid=stack-position]')"
                           ".textContent === '2 / 3'")
    page.wait_for_timeout(300)
    assert np.abs(_canvas_pixels(page) - first).mean() > 0.5, "the next slice looks the same"
    assert position.inner_text() == "2 / 3"


def test_study_claimed_by_a_colleague_opens_view_only(page: Any,
                                                      demo_server: QoimaServer) -> None:
    items = httpx.get(f"{demo_server.url}/api/worklist", timeout=10).json()["items"]
    uid = next(i["study_instance_uid"] for i in items if not i["claim_owner"])
    claimed = httpx.post(f"{demo_server.url}/api/studies/{uid}/claim",
                         headers={"X-Qoima-User": "Colleague"}, timeout=10)
    assert claimed.status_code == 200
    sign_in(page, demo_server, "Reader Six")
    row = page.locator(f"tr.row[data-study='{uid}']")
    assert "Colleague" in row.inner_text()
    row.click()
    page.locator("[data-testid=viewer-canvas][data-rendered='1']").first.wait_for()
    page.get_by_test_id("report-panel").get_by_text("Colleague").wait_for()
    assert page.get_by_test_id("sign").count() == 0


def test_worklist_shows_new_studies_without_reload(page: Any, demo_server: QoimaServer) -> None:
    from dicomweb_client.api import DICOMwebClient
    from pydicom.uid import generate_uid

    from qoima.dicom.iin import make_iin
    from qoima.web.demo import DEMO_DIR

    sign_in(page, demo_server, "Reader Seven")
    page.locator("tr.row").first.wait_for()
    ds = pydicom.dcmread(DEMO_DIR / "demo01.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName = "Жаңа^Пациент"
    ds.PatientID = make_iin(datetime.date(1988, 4, 1), "F", 4321)
    DICOMwebClient(demo_server.dicomweb_url).store_instances([ds])
    page.locator(f"tr.row[data-study='{ds.StudyInstanceUID}']").wait_for(timeout=15000)
    assert "Жаңа Пациент" in page.locator("table.worklist").inner_text()


def test_lung_window_preset_on_ct(page: Any, demo_server: QoimaServer, samples: Path) -> None:
    uid = _store_ct(demo_server, samples)
    sign_in(page, demo_server, "Reader Eight", f"#/study/{uid}")
    page.locator("[data-testid=viewer-canvas][data-rendered='1']").first.wait_for()
    page.wait_for_timeout(300)
    before = _canvas_pixels(page)
    page.get_by_test_id("window-preset").select_option("lung")
    page.get_by_text("WL -600 / WW 1500").wait_for()
    page.wait_for_timeout(300)
    assert np.abs(_canvas_pixels(page) - before).mean() > 3
