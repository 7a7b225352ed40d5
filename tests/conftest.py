"""Shared fixtures: a real ``qoima serve`` on SQLite or PostgreSQL, and DICOM sample paths."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import SAMPLES, QoimaServer, running_server

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]

POSTGRES_ADMIN_URL = os.environ.get("QOIMA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_database() -> Iterator[str]:
    import psycopg

    name = f"qoima_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_ADMIN_URL} is required for scale-out tests: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None means the embedded default (SQLite in the data dir)."""
    if request.param == "sqlite":
        yield None
    else:
        yield from _postgres_database()


@pytest.fixture
def server(tmp_path: Path, database_url: str | None) -> Iterator[QoimaServer]:
    """A running ``qoima serve`` on free ports, on SQLite and on PostgreSQL."""
    with running_server(tmp_path / "data", database_url=database_url) as running:
        yield running


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[QoimaServer]:
    """One server per test module and backend, for read-only tests over shared data."""
    data_dir = tmp_path_factory.mktemp("module") / "data"
    if request.param == "sqlite":
        with running_server(data_dir) as running:
            yield running
        return
    for url in _postgres_database():
        with running_server(data_dir, database_url=url) as running:
            yield running


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[QoimaServer]:
    with running_server(tmp_path / "data") as running:
        yield running


@pytest.fixture(scope="session")
def samples() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"DICOM samples not found at {SAMPLES}")
    return SAMPLES


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is required (apt-get install dcmtk); .ci/run installs it")
    return path


# One Chromium per test module for the browser tests (web UI, security).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is required (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
