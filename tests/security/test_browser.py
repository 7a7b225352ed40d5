"""The web UI in a real Chromium with authentication on: the login page, then a worklist that
shows only the studies the signed-in user may see."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.security.conftest import (
    PASSWORD,
    PATIENT_A,
    PATIENT_B,
    provision,
    study_uid,
    write_studies,
)
from tests.servers import QoimaServer, free_port


@pytest.fixture(scope="module")
def closed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QoimaServer]:
    root = tmp_path_factory.mktemp("browser")
    write_studies(root / "studies")
    server = QoimaServer(root / "data", free_port(), free_port(),
                         env={"QOIMA_AUTH_REQUIRED": "true", "QOIMA_AI_ENABLED": "false"})
    provision(server, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _worklist_as(browser: Any, server: QoimaServer, username: str) -> set[str]:
    context = browser.new_context(locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(20000)
    try:
        page.goto(f"{server.url}/")
        page.wait_for_url("**/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/")
        page.get_by_test_id("who-input").fill(username)  # the app still asks for a name
        page.get_by_test_id("who-submit").click()
        page.get_by_test_id("who-input").wait_for(state="detached")
        page.locator("select, tr.row").first.wait_for()
        page.wait_for_load_state("networkidle")
        rows = page.locator("tr.row").evaluate_all("rows => rows.map(r => r.dataset.study)")
        return set(rows)
    finally:
        context.close()


def test_login_page_guards_the_app(browser: Any, closed_server: QoimaServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{closed_server.url}/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", "clinician")
    page.fill("input[name=password]", "wrong password here")
    page.click("button[type=submit]")
    assert "Wrong username or password" in page.content()
    context.close()


@pytest.mark.parametrize(("username", "expected"), [
    ("clinician", {study_uid(PATIENT_A)}), ("radiologist", {study_uid(PATIENT_B)}),
    ("admin", {study_uid(PATIENT_A), study_uid(PATIENT_B)})])
def test_worklist_in_the_browser_is_scoped(browser: Any, closed_server: QoimaServer,
                                           username: str, expected: set[str]) -> None:
    assert _worklist_as(browser, closed_server, username) == expected
