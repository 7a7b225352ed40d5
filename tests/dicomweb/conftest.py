"""DICOMweb fixtures: a server loaded once per module with the sample corpus, and helpers that
build multipart bodies and small instances from the samples."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import _postgres_database
from tests.servers import SAMPLES, QoimaServer, running_server

# Readable, storable samples with distinct SOP Instance UIDs (RG1_J2KI shares RG1_UNCI's UID).
CORPUS = [
    "ct/CT_small.dcm", "ct/693_UNCI.dcm", "ct/CT1_J2KI.dcm", "ct/eCT_Supplemental.dcm",
    "cr_dx/RG1_UNCI.dcm", "cr_dx/dx_image.dcm", "cr_dx/RG3_RLE.dcm", "cr_dx/RG2_JPLY.dcm",
    "ct_series_3slice/01.dcm", "ct_series_3slice/02.dcm", "ct_series_3slice/03.dcm",
    "other/MR_small.dcm", "other/test-SR.dcm",
    *(f"mr_series_adc/{n:06d}.dcm" for n in range(20)),
]


def sample(name: str) -> Path:
    return SAMPLES / name


def multipart_body(parts: list[bytes], boundary: str | None = None,
                   part_type: str = "application/dicom") -> tuple[bytes, str]:
    boundary = boundary or uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks += [f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode(), part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def variant(name: str, **attributes: object) -> Dataset:
    """A sample with new UIDs (new study, series, instance) and the given attributes."""
    ds = pydicom.dcmread(sample(name))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def stow(server: QoimaServer, parts: list[bytes], path: str = "/studies") -> httpx.Response:
    body, content_type = multipart_body(parts)
    return httpx.post(server.dicomweb_url + path, content=body,
                      headers={"Content-Type": content_type, "Accept": "application/dicom+json"},
                      timeout=60)


def instance_count(server: QoimaServer) -> int:
    response = httpx.get(server.dicomweb_url + "/instances", params={"limit": "10000"})
    response.raise_for_status()
    return len(response.json())


@dataclass
class LoadedServer:
    server: QoimaServer
    files: dict[str, Path]  # SOPInstanceUID -> sample file

    @property
    def url(self) -> str:
        return self.server.dicomweb_url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[LoadedServer]:
    """One server per module and backend, holding CORPUS (stored through STOW-RS)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"DICOM samples not found at {SAMPLES}")
    databases = _postgres_database() if request.param == "postgresql" else iter([None])
    database_url = next(databases)
    data_dir = tmp_path_factory.mktemp("dicomweb") / "data"
    try:
        with running_server(data_dir, database_url=database_url) as server:
            files = {str(pydicom.dcmread(sample(n), stop_before_pixels=True).SOPInstanceUID):
                     sample(n) for n in CORPUS}
            response = stow(server, [sample(n).read_bytes() for n in CORPUS])
            assert response.status_code == 200, response.text
            yield LoadedServer(server, files)
    finally:
        for _ in databases:
            pass


def split_multipart(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart/related response, checked against RFC 2046 framing."""
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related")
    boundary = next(p.split("=", 1)[1].strip('"') for p in content_type.split(";")
                    if p.strip().startswith("boundary="))
    body = response.content
    assert body.endswith(f"--{boundary}--\r\n".encode())
    parts = []
    for chunk in body.split(f"--{boundary}".encode())[1:-1]:
        head, _, content = chunk[2:].partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        assert content.endswith(b"\r\n")
        data = content[:-2]
        if "Content-Length" in headers:
            assert int(headers["Content-Length"]) == len(data)
        parts.append((headers, data))
    return parts


def assert_same_dataset(received: Dataset, expected: Dataset) -> None:
    """Equal attributes and equal decoded pixels (pydicom pads odd-length pixel data)."""
    assert [e.tag for e in received] == [e.tag for e in expected]
    for element in expected:
        if element.tag != 0x7FE00010:
            assert received[element.tag] == element, element.keyword
    if "PixelData" in expected:
        assert (received.pixel_array == expected.pixel_array).all()
