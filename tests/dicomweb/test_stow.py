"""STOW-RS against a running ``qoima serve``: responses per PS3.18 10.5.3, one ingest path."""

from __future__ import annotations

import io

import httpx
import pydicom
from dicomweb_client import DICOMwebClient

from tests.dicomweb.conftest import (
    assert_same_dataset,
    instance_count,
    multipart_body,
    sample,
    split_multipart,
    stow,
    to_bytes,
    variant,
)
from tests.servers import QoimaServer

FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_SEQUENCE = "00081199"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE_UID = "00081155"


def _uids(body: dict[str, object], sequence: str) -> list[str]:
    items = body.get(sequence, {}).get("Value", [])  # type: ignore[attr-defined]
    return [item[REFERENCED_SOP_INSTANCE_UID]["Value"][0] for item in items]


def _reasons(body: dict[str, object]) -> list[int]:
    items = body[FAILED_SOP_SEQUENCE]["Value"]  # type: ignore[index]
    return [item[FAILURE_REASON]["Value"][0] for item in items]


def test_dicomweb_client_stores_and_gets_back_equal_datasets(server: QoimaServer) -> None:
    names = ["ct/CT_small.dcm", "cr_dx/dx_image.dcm", "ct/CT1_J2KI.dcm"]
    client = DICOMwebClient(server.dicomweb_url)
    datasets = [pydicom.dcmread(sample(n)) for n in names]
    result = client.store_instances(datasets)
    stored = [item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence]
    assert stored == [ds.SOPInstanceUID for ds in datasets]
    assert "FailedSOPSequence" not in result
    for ds in datasets:
        response = httpx.get(
            f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
            f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
            headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert response.status_code == 200
        [(_headers, data)] = split_multipart(response)
        assert_same_dataset(pydicom.dcmread(io.BytesIO(data)), ds)


def test_conflicting_instance_is_refused_with_409_and_failure_reason(server: QoimaServer
                                                                      ) -> None:
    first = stow(server, [sample("cr_dx/RG1_UNCI.dcm").read_bytes()])
    assert first.status_code == 200
    # Same SOP Instance UID, different content (JPEG 2000): the default policy rejects it
    second = stow(server, [sample("cr_dx/RG1_J2KI.dcm").read_bytes()])
    assert second.status_code == 409
    body = second.json()
    assert REFERENCED_SOP_SEQUENCE not in body
    assert _reasons(body) == [0x0111]
    uid = pydicom.dcmread(sample("cr_dx/RG1_UNCI.dcm"), stop_before_pixels=True).SOPInstanceUID
    assert _uids(body, FAILED_SOP_SEQUENCE) == [uid]
    assert instance_count(server) == 1


def test_identical_resend_is_a_success(server: QoimaServer) -> None:
    data = sample("ct/CT_small.dcm").read_bytes()
    assert stow(server, [data]).status_code == 200
    again = stow(server, [data])
    assert again.status_code == 200
    assert instance_count(server) == 1


def test_mixed_batch_answers_202_with_both_sequences(server: QoimaServer) -> None:
    good = variant("ct/CT_small.dcm")
    bad = b"\0" * 128 + b"DICM" + b"not a dataset at all" * 10
    response = stow(server, [to_bytes(good), bad])
    assert response.status_code == 202
    body = response.json()
    assert _uids(body, REFERENCED_SOP_SEQUENCE) == [good.SOPInstanceUID]
    assert _reasons(body) == [0xC000]
    assert instance_count(server) == 1


def test_instance_of_another_study_is_refused_on_study_url(server: QoimaServer) -> None:
    ds = variant("ct/CT_small.dcm")
    body, content_type = multipart_body([to_bytes(ds)])
    response = httpx.post(f"{server.dicomweb_url}/studies/1.2.3.4", content=body,
                          headers={"Content-Type": content_type})
    assert response.status_code == 409
    assert _reasons(response.json()) == [0xC409]
    assert instance_count(server) == 0


def test_single_application_dicom_body_is_stored(server: QoimaServer) -> None:
    ds = variant("ct/CT_small.dcm")
    response = httpx.post(f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}",
                          content=to_bytes(ds), headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200
    assert _uids(response.json(), REFERENCED_SOP_SEQUENCE) == [ds.SOPInstanceUID]


def test_parts_are_answered_in_order_and_repeats_in_one_request_succeed(server: QoimaServer
                                                                         ) -> None:
    # parts are stored several at a time: the answer still follows the parts' order, and the
    # same instance twice in one request is one stored instance and two successes
    datasets = [variant("ct/CT_small.dcm") for _ in range(7)]
    parts = [to_bytes(ds) for ds in datasets]
    response = stow(server, [*parts, parts[2], parts[2]])
    assert response.status_code == 200
    expected = [ds.SOPInstanceUID for ds in datasets]
    assert _uids(response.json(), REFERENCED_SOP_SEQUENCE) == [*expected, expected[2],
                                                               expected[2]]
    assert instance_count(server) == 7


def test_one_request_stores_the_good_parts_beside_conflicts_and_garbage(server: QoimaServer
                                                                         ) -> None:
    # the parts of a request share one index commit: a conflict or an unreadable part in it
    # fails alone, and what it would have replaced is untouched
    first, second = variant("ct/CT_small.dcm"), variant("ct/CT_small.dcm")
    changed = variant("ct/CT_small.dcm", SOPInstanceUID=first.SOPInstanceUID,
                      StudyInstanceUID=first.StudyInstanceUID,
                      SeriesInstanceUID=first.SeriesInstanceUID, SeriesDescription="changed")
    garbage = b"\0" * 128 + b"DICM" + b"not a dataset at all" * 10
    response = stow(server, [to_bytes(first), to_bytes(changed), to_bytes(second), garbage,
                             to_bytes(first)])
    assert response.status_code == 202, response.text
    body = response.json()
    assert _uids(body, REFERENCED_SOP_SEQUENCE) == [first.SOPInstanceUID, second.SOPInstanceUID,
                                                    first.SOPInstanceUID]
    assert _reasons(body) == [0x0111, 0xC000]
    assert instance_count(server) == 2
    url = (f"{server.dicomweb_url}/studies/{first.StudyInstanceUID}/series/"
           f"{first.SeriesInstanceUID}/instances/{first.SOPInstanceUID}")
    stored = httpx.get(url, headers={"Accept": 'multipart/related; type="application/dicom";'
                                               ' transfer-syntax=*'})
    assert stored.status_code == 200
    assert to_bytes(first) in stored.content
