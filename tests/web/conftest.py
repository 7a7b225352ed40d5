"""Web app fixtures: ``qoima serve --demo`` with the shipped AI model, and headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _postgres_database
from tests.servers import QoimaServer, running_server

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "web"
DEMO_STUDIES = 12
AI_TIMEOUT_S = 90.0


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QoimaServer]:
    """``qoima serve --demo`` as a newcomer runs it: the shipped model writes AI results."""
    root = tmp_path_factory.mktemp("web")
    env = {"QOIMA_AI_STABLE_AGE_S": "1"}
    with running_server(root / "data", env=env, extra_args=["--demo"]) as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo_api_server(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[QoimaServer]:
    """``qoima serve --demo`` without AI, on SQLite and on PostgreSQL, for the API rules."""
    root = tmp_path_factory.mktemp("web-api")
    env = {"QOIMA_AI_ENABLED": "false"}
    if request.param == "sqlite":
        with running_server(root / "data", env=env, extra_args=["--demo"]) as server:
            yield server
        return
    for database_url in _postgres_database():
        with running_server(root / "data", database_url=database_url, env=env,
                            extra_args=["--demo"]) as server:
            yield server


def wait_for_ai(server: QoimaServer, count: int = DEMO_STUDIES) -> list[dict[str, Any]]:
    """Poll the worklist until ``count`` studies have an AI priority."""
    deadline = time.monotonic() + AI_TIMEOUT_S
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = httpx.get(f"{server.url}/api/worklist", params={"status": "all"},
                          timeout=10).json()["items"]
        if sum(item["ai_priority"] is not None for item in items) >= count:
            return items
        time.sleep(0.5)
    raise AssertionError(f"AI results for only {sum(i['ai_priority'] is not None for i in items)}"
                         f" of {count} demo studies within {AI_TIMEOUT_S}s")


@pytest.fixture
def page(browser: Any, demo_server: QoimaServer) -> Iterator[Any]:
    """A fresh browser context (empty localStorage) on the demo server, in English."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(20000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def sign_in(page: Any, server: QoimaServer, name: str, hash_path: str = "#/") -> None:
    """Answer the "who are you" prompt."""
    page.goto(f"{server.url}/{hash_path}")
    page.get_by_test_id("who-input").fill(name)
    page.get_by_test_id("who-submit").click()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path
