"""Scope rules through the archive itself: facility, reading pools, consent, break-glass, and
users/peers managed with the ``qoima users`` commands."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qoima.app import build_archive
from qoima.archive import access
from qoima.archive.access import GuardedArchive
from qoima.dicom.attributes import Level
from qoima.dicom.query import Query, parse_condition
from qoima.errors import Forbidden
from tests.factories import make_instance, to_bytes
from tests.security.conftest import (
    ALMATY,
    ASTANA,
    PASSWORD,
    PATIENT_A,
    PATIENT_B,
    SecureServer,
    study_uid,
)

STUDY_A, STUDY_B = study_uid(PATIENT_A), study_uid(PATIENT_B)
EVERY_STUDY = Query(Level.STUDY, (parse_condition("PatientID", "*0*"),))  # both test patients


@pytest.fixture
def archive(tmp_path: Path, database_url: str | None) -> Iterator[GuardedArchive]:
    from qoima.config import load_settings

    built = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    assert isinstance(built, GuardedArchive)
    for patient in (PATIENT_A, PATIENT_B):
        built.store_instance(to_bytes(make_instance(
            patient_id=patient["id"], patient_name=patient["name"], study=patient["study"],
            institution=patient["facility"])), "test")
    access.add_user(built, "clin", "clinician", PASSWORD, ASTANA)
    access.add_user(built, "rad", "radiologist", PASSWORD, None, "Astana")
    yield built
    built.database.dispose()


def _visible(archive: GuardedArchive, username: str) -> set[str]:
    principal = access.principal_for_user(archive, access.get_user(archive, username), "test",
                                          "127.0.0.1")
    with access.acting_as(principal):
        return {row["StudyInstanceUID"] for row in archive.find(EVERY_STUDY)}


def test_clinician_sees_own_facility(archive: GuardedArchive) -> None:
    assert _visible(archive, "clin") == {STUDY_A}


def test_radiologist_without_pool_sees_nothing(archive: GuardedArchive) -> None:
    assert _visible(archive, "rad") == set()


def test_reading_pool_by_region(archive: GuardedArchive) -> None:
    from qoima.archive import worklist

    worklist.set_facility_region(archive, ALMATY, "Almaty")
    access.add_pool_member(archive, "south", "user:rad")
    access.add_pool_member(archive, "south", "region:Almaty")
    assert _visible(archive, "rad") == {STUDY_B}


def test_unknown_region_is_refused(archive: GuardedArchive) -> None:
    from qoima.errors import InvalidQuery

    with pytest.raises(InvalidQuery):
        access.add_pool_member(archive, "south", "region:Atlantis")


def test_consent_widens_a_facility(archive: GuardedArchive) -> None:
    access.record_consent(archive, PATIENT_B["id"], ASTANA, "referral letter 2024-117")
    assert _visible(archive, "clin") == {STUDY_A, STUDY_B}


def test_break_glass_widens_one_user(archive: GuardedArchive) -> None:
    principal = access.principal_for_user(archive, access.get_user(archive, "rad"), "test", "")
    access.break_glass(archive, principal, PATIENT_A["id"], "stroke code, no radiologist on site")
    assert _visible(archive, "rad") == {STUDY_A}
    assert _visible(archive, "clin") == {STUDY_A}  # nobody else gained anything


def test_retrieval_outside_scope_is_forbidden(archive: GuardedArchive) -> None:
    principal = access.principal_for_user(archive, access.get_user(archive, "clin"), "test", "")
    stored = archive.instances_for(EVERY_STUDY)  # no caller: the archive itself
    outside = next(s for s in stored if s.study_instance_uid == STUDY_B)
    with access.acting_as(principal), pytest.raises(Forbidden) as refused:
        archive.get_instance(outside.sop_instance_uid)
    assert PATIENT_B["id"] not in str(refused.value)
    assert PATIENT_B["name"] not in str(refused.value)


def test_wrong_password_and_unknown_user_look_the_same(archive: GuardedArchive) -> None:
    with pytest.raises(Forbidden) as wrong:
        access.check_password(archive, "clin", "not the password")
    with pytest.raises(Forbidden) as unknown:
        access.check_password(archive, "nobody", "not the password")
    assert str(wrong.value) == str(unknown.value)
    assert access.check_password(archive, "clin", PASSWORD).role == "clinician"


def _qoima(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qoima", *args], input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_users_cli(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    added = _qoima("users", "add", "dr.aigerim", "--role", "radiologist", "--region", "Shymkent",
                   "--password-stdin", *data, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    short = _qoima("users", "add", "dr.b", "--role", "clinician", "--password-stdin", *data,
                   stdin="short\n")
    assert short.returncode != 0
    listed = _qoima("users", "list", *data)
    assert "dr.aigerim\tradiologist\t-\tShymkent" in listed.stdout
    token = _qoima("users", "token", "dr.aigerim", "--ttl-days", "1", *data)
    assert token.stdout.startswith("qoima_")
    assert _qoima("users", "pool", "south", "user:dr.aigerim", "region:Shymkent",
                  *data).returncode == 0
    assert _qoima("users", "peer", "CT_SHYMKENT", "10.1.2.0/24", *data).returncode == 0
    assert _qoima("users", "peer", "BAD", "not-an-ip", *data).returncode != 0
    assert _qoima("users", "consent", "870412300123", "Shymkent Clinic", "--reason",
                  "signed form", *data).returncode == 0
    verified = _qoima("audit", "verify", *data)
    assert verified.returncode == 0
    assert "intact: 5 records" in verified.stdout  # each change is on the trail


def test_scoped_paging_is_exact(secure: SecureServer) -> None:
    """The scope is applied in SQL: a page of one holds the one study in scope, not nothing."""
    response = secure.get("/dicomweb/studies?limit=1&offset=0", "radiologist")
    assert response.status_code == 200, response.text
    uids = [item["0020000D"]["Value"][0] for item in response.json()]
    assert uids == [study_uid(PATIENT_B)]
    assert secure.get("/dicomweb/studies?limit=1&offset=1", "radiologist").status_code in (
        200, 204)
    assert secure.get("/dicomweb/studies?limit=1&offset=1", "radiologist").text in ("", "[]")


def test_worklist_total_counts_only_studies_in_scope(secure: SecureServer) -> None:
    response = secure.get("/api/worklist?status=all", "clinician")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == 1
    assert [item["study_instance_uid"] for item in body["items"]] == [study_uid(PATIENT_A)]
