"""WADO-RS and WADO-URI against a running server loaded with the samples."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from PIL import Image
from pydicom.uid import JPEG2000Lossless, RLELossless

from qoima.dicomweb import wado
from tests.dicomweb.conftest import (
    LoadedServer,
    assert_same_dataset,
    sample,
    split_multipart,
    stow,
    to_bytes,
    variant,
)
from tests.servers import QoimaServer

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def _url(loaded: LoadedServer | QoimaServer, name: str, suffix: str = "") -> str:
    ds = pydicom.dcmread(sample(name), stop_before_pixels=True)
    base = loaded.url if isinstance(loaded, LoadedServer) else loaded.dicomweb_url
    return (f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}{suffix}")


def test_series_as_stored_returns_the_received_bytes(loaded: LoadedServer) -> None:
    ds = pydicom.dcmread(sample("mr_series_adc/000000.dcm"), stop_before_pixels=True)
    response = httpx.get(f"{loaded.url}/studies/{ds.StudyInstanceUID}/series/"
                         f"{ds.SeriesInstanceUID}", headers={"Accept": AS_STORED})
    assert response.status_code == 200
    parts = split_multipart(response)
    expected = {sample(f"mr_series_adc/{n:06d}.dcm").read_bytes() for n in range(20)}
    assert {data for _headers, data in parts} == expected
    assert all(h["Content-Type"].startswith("application/dicom") for h, _ in parts)
    assert response.headers["Content-Length"] == str(len(response.content))


def test_an_instance_larger_than_a_write_comes_whole(loaded: LoadedServer) -> None:
    """A 7 MB radiograph spans two of the server's 4 MB writes."""
    ds = pydicom.dcmread(sample("cr_dx/RG1_UNCI.dcm"), stop_before_pixels=True)
    response = httpx.get(f"{loaded.url}/studies/{ds.StudyInstanceUID}",
                         headers={"Accept": AS_STORED})
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(response.content))
    [(headers, data)] = split_multipart(response)
    assert data == sample("cr_dx/RG1_UNCI.dcm").read_bytes()
    assert headers["Content-Length"] == str(len(data))


def test_dicomweb_client_series_default_is_explicit_vr_little_endian(loaded: LoadedServer
                                                                     ) -> None:
    client = DICOMwebClient(loaded.url)
    for name in ("ct/CT1_J2KI.dcm", "ct_series_3slice/01.dcm", "cr_dx/RG3_RLE.dcm"):
        original = pydicom.dcmread(sample(name))
        [received] = [ds for ds in client.retrieve_series(original.StudyInstanceUID,
                                                          original.SeriesInstanceUID)
                      if ds.SOPInstanceUID == original.SOPInstanceUID]
        assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert np.array_equal(received.pixel_array, original.pixel_array)
        # retrieve_instance asks for transfer-syntax=*: the stored syntax and dataset
        stored = client.retrieve_instance(original.StudyInstanceUID, original.SeriesInstanceUID,
                                          original.SOPInstanceUID)
        assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert_same_dataset(stored, original)


@pytest.mark.parametrize("syntax", [str(RLELossless), str(JPEG2000Lossless)])
def test_transcodes_to_requested_lossless_syntax(loaded: LoadedServer, syntax: str) -> None:
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    response = httpx.get(_url(loaded, "ct/CT_small.dcm"), headers={"Accept": accept})
    assert response.status_code == 200
    [(headers, data)] = split_multipart(response)
    assert f"transfer-syntax={syntax}" in headers["Content-Type"]
    received = pydicom.dcmread(io.BytesIO(data))
    assert received.file_meta.TransferSyntaxUID == syntax
    original = pydicom.dcmread(sample("ct/CT_small.dcm"))
    assert np.array_equal(received.pixel_array, original.pixel_array)


def test_unacceptable_requests_get_406(loaded: LoadedServer) -> None:
    url = _url(loaded, "ct/CT_small.dcm")
    for accept in ("application/xml",
                   'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4',
                   'multipart/related; type="application/dicom"; '
                   "transfer-syntax=1.2.840.10008.1.2.4.50"):
        assert httpx.get(url, headers={"Accept": accept}).status_code == 406, accept
    # JPEG Extended that no installed decoder reads: cannot become Explicit VR Little Endian
    undecodable = _url(loaded, "cr_dx/RG2_JPLY.dcm")
    assert httpx.get(undecodable).status_code == 406
    assert httpx.get(undecodable, headers={"Accept": AS_STORED}).status_code == 200


def test_unknown_uids_get_404(loaded: LoadedServer) -> None:
    ds = pydicom.dcmread(sample("ct/CT_small.dcm"), stop_before_pixels=True)
    for path in ("/studies/1.2.3", f"/studies/{ds.StudyInstanceUID}/series/1.2.3",
                 f"/studies/1.2.3/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
                 f"/studies/{ds.StudyInstanceUID}/series/1.2.3/instances/{ds.SOPInstanceUID}",
                 "/studies/1.2.3/metadata"):
        response = httpx.get(loaded.url + path)
        assert response.status_code == 404, path
        assert response.json()["status"] == 404


def test_metadata_is_the_header_with_bulk_data_uris(loaded: LoadedServer) -> None:
    original = pydicom.dcmread(sample("ct/CT_small.dcm"))
    response = httpx.get(_url(loaded, "ct/CT_small.dcm", "/metadata"))
    assert response.status_code == 200
    [metadata] = response.json()
    pixel_uri = metadata.pop("7FE00010")["BulkDataURI"]
    received = pydicom.Dataset.from_json(metadata, lambda uri: b"")
    for element in original:
        if element.tag >= 0x7FE00010:  # pixel data and trailing padding are not metadata
            continue
        if element.VR in ("OB", "OW", "UN") and len(element.value) > 1024:
            assert "BulkDataURI" in metadata[f"{element.tag:08X}"]
        else:
            assert received[element.tag].value == element.value, element.keyword
    frames = httpx.get(pixel_uri)
    assert frames.status_code == 200
    [(_headers, pixels)] = split_multipart(frames)
    assert pixels == original.PixelData
    study = httpx.get(f"{loaded.url}/studies/{original.StudyInstanceUID}/metadata").json()
    assert [m["00080018"]["Value"][0] for m in study] == [original.SOPInstanceUID]


def test_frames_native_and_as_stored(loaded: LoadedServer) -> None:
    original = pydicom.dcmread(sample("ct/eCT_Supplemental.dcm"))
    size = len(original.PixelData) // 2
    response = httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", "/frames/2,1"))
    assert response.status_code == 200
    [(_h2, second), (_h1, first)] = split_multipart(response)
    assert first == original.PixelData[:size]
    assert second == original.PixelData[size:]
    assert httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", "/frames/3")).status_code == 404
    assert httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", "/frames/0")).status_code == 400
    compressed = httpx.get(_url(loaded, "ct/CT1_J2KI.dcm", "/frames/1"), headers={
        "Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    [(headers, frame)] = split_multipart(compressed)
    assert headers["Content-Type"].startswith("image/jp2")
    j2k = pydicom.dcmread(sample("ct/CT1_J2KI.dcm"))
    assert frame == next(pydicom.encaps.generate_frames(j2k.PixelData, number_of_frames=1))
    decoded = httpx.get(_url(loaded, "ct/CT1_J2KI.dcm", "/frames/1"))
    [(_headers, native)] = split_multipart(decoded)
    assert native == j2k.pixel_array.tobytes()


def _image(response: httpx.Response, media_type: str) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_rendered_png_and_jpeg(loaded: LoadedServer) -> None:
    url = _url(loaded, "ct/CT_small.dcm", "/rendered")
    png = _image(httpx.get(url, headers={"Accept": "image/png"}), "image/png")
    assert png.shape == (128, 128)
    jpeg = _image(httpx.get(url), "image/jpeg")
    assert jpeg.shape == (128, 128)
    narrow = _image(httpx.get(url, params={"window": "100,1"}, headers={"Accept": "image/png"}),
                    "image/png")
    assert set(np.unique(narrow)) <= {0, 255}
    original = pydicom.dcmread(sample("ct/CT_small.dcm"))
    hu = original.pixel_array * float(original.RescaleSlope) + float(original.RescaleIntercept)
    assert np.array_equal(narrow == 255, hu >= 100)
    small = _image(httpx.get(url, params={"viewport": "64,32"}), "image/jpeg")
    assert small.shape == (32, 32)
    assert httpx.get(url, params={"window": "1"}).status_code == 400
    assert httpx.get(url, headers={"Accept": "image/gif"}).status_code == 406
    frame = _image(httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", "/frames/2/rendered"),
                             headers={"Accept": "image/png"}), "image/png")
    assert frame.shape == (512, 512)


def test_rendered_series_study_and_frame_lists_are_multipart(loaded: LoadedServer) -> None:
    first = pydicom.dcmread(sample("mr_series_adc/000000.dcm"), stop_before_pixels=True)
    series_url = (f"{loaded.url}/studies/{first.StudyInstanceUID}/series/"
                  f"{first.SeriesInstanceUID}")
    by_number = sorted((pydicom.dcmread(path, stop_before_pixels=True)
                        for path in sample("mr_series_adc").glob("*.dcm")),
                       key=lambda ds: int(ds.InstanceNumber))
    accept = {"Accept": 'multipart/related; type="image/png"'}
    for url in (f"{series_url}/rendered", f"{loaded.url}/studies/{first.StudyInstanceUID}"
                                          "/rendered"):
        response = httpx.get(url, headers=accept, timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("multipart/related")
        parts = split_multipart(response)
        assert len(parts) == len(by_number)
        for (headers, body), ds in zip(parts, by_number, strict=True):
            assert headers["Content-Type"] == "image/png"
            alone = httpx.get(f"{series_url}/instances/{ds.SOPInstanceUID}/rendered",
                              headers={"Accept": "image/png"})
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(body))),
                                  _image(alone, "image/png")), "not in instance number order"
    jpeg_parts = split_multipart(httpx.get(f"{series_url}/rendered", timeout=60))
    assert {h["Content-Type"] for h, _ in jpeg_parts} == {"image/jpeg"}
    assert httpx.get(f"{series_url}/rendered", headers={"Accept": "image/gif"}
                     ).status_code == 406
    frames = httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", "/frames/2,1/rendered"),
                       headers=accept)
    assert frames.status_code == 200, frames.text
    rendered = [np.asarray(Image.open(io.BytesIO(body))) for _, body in split_multipart(frames)]
    for number, image in zip((2, 1), rendered, strict=True):
        alone = httpx.get(_url(loaded, "ct/eCT_Supplemental.dcm", f"/frames/{number}/rendered"),
                          headers={"Accept": "image/png"})
        assert np.array_equal(image, _image(alone, "image/png"))
    assert not np.array_equal(rendered[0], rendered[1])
    report = pydicom.dcmread(sample("other/test-SR.dcm"), stop_before_pixels=True)
    assert httpx.get(f"{loaded.url}/studies/{report.StudyInstanceUID}/series/"
                     f"{report.SeriesInstanceUID}/rendered").status_code == 406


def test_monochrome1_is_inverted(server: QoimaServer) -> None:
    monochrome1 = variant("cr_dx/dx_image.dcm")
    assert monochrome1.PhotometricInterpretation == "MONOCHROME1"
    monochrome2 = variant("cr_dx/dx_image.dcm", PhotometricInterpretation="MONOCHROME2")
    assert stow(server, [to_bytes(monochrome1), to_bytes(monochrome2)]).status_code == 200
    images = []
    for ds in (monochrome1, monochrome2):
        url = (f"{server.dicomweb_url}/studies/{ds.StudyInstanceUID}/series/"
               f"{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered")
        images.append(_image(httpx.get(url, headers={"Accept": "image/png"}), "image/png"
                             ).astype(int))
    assert np.array_equal(images[0], 255 - images[1])
    assert images[0].std() > 10


def test_thumbnails_at_every_level(loaded: LoadedServer) -> None:
    ds = pydicom.dcmread(sample("mr_series_adc/000000.dcm"), stop_before_pixels=True)
    study = f"{loaded.url}/studies/{ds.StudyInstanceUID}"
    for url in (f"{study}/thumbnail", f"{study}/series/{ds.SeriesInstanceUID}/thumbnail",
                _url(loaded, "mr_series_adc/000000.dcm", "/thumbnail"),
                _url(loaded, "ct/eCT_Supplemental.dcm", "/frames/2/thumbnail")):
        image = _image(httpx.get(url), "image/jpeg")
        assert max(image.shape[:2]) == 128, url
    structured_report = _url(loaded, "other/test-SR.dcm", "/thumbnail")
    assert httpx.get(structured_report).status_code == 406


def test_wado_uri(loaded: LoadedServer) -> None:
    ds = pydicom.dcmread(sample("ct/CT_small.dcm"), stop_before_pixels=True)
    params = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID,
              "seriesUID": ds.SeriesInstanceUID, "objectUID": ds.SOPInstanceUID}
    wado = loaded.server.url + "/wado"
    dicom = httpx.get(wado, params={**params, "contentType": "application/dicom"})
    assert dicom.status_code == 200
    assert dicom.content == sample("ct/CT_small.dcm").read_bytes()
    jpeg = _image(httpx.get(wado, params=params), "image/jpeg")
    assert jpeg.shape == (128, 128)
    png = _image(httpx.get(wado, params={**params, "contentType": "image/png", "rows": "64"}),
                 "image/png")
    assert png.shape == (64, 64)
    j2k = pydicom.dcmread(sample("ct/CT1_J2KI.dcm"), stop_before_pixels=True)
    converted = httpx.get(wado, params={
        "requestType": "WADO", "studyUID": j2k.StudyInstanceUID,
        "seriesUID": j2k.SeriesInstanceUID, "objectUID": j2k.SOPInstanceUID,
        "contentType": "application/dicom"})
    assert pydicom.dcmread(io.BytesIO(converted.content)).file_meta.TransferSyntaxUID == (
        "1.2.840.10008.1.2.1")
    assert httpx.get(wado, params={**params, "requestType": "OTHER"}).status_code == 400
    assert httpx.get(wado, params={**params, "objectUID": "1.2.3"}).status_code == 404
    assert httpx.get(wado, params={**params, "objectUID": "../../x"}).status_code == 400


def test_cors_lets_a_browser_viewer_in(loaded: LoadedServer) -> None:
    origin = "http://viewer.example"
    preflight = httpx.options(loaded.url + "/studies", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept"})
    assert preflight.status_code == 200
    assert "GET" in preflight.headers["access-control-allow-methods"]
    response = httpx.get(loaded.url + "/studies", headers={"Origin": origin})
    assert response.headers["access-control-allow-origin"] in ("*", origin)


def test_write_buffers_are_filled_again_only_once_no_view_of_them_is_left() -> None:
    """``_Chunks`` refills a buffer it handed out only when the server let go of it: a
    consumer that keeps each write's view until the next one comes (Starlette's loop), and
    one that keeps every view (a transport that queues them), both get the bytes sent."""
    pieces = [bytes([n % 251]) * (n * 7 % 50 + 1) for n in range(400)]

    def body() -> Iterator[memoryview]:
        chunks = wado._Chunks(64)
        for piece in pieces:
            yield from chunks.add(piece)
            yield from chunks.add_file(io.BytesIO(piece), len(piece))
        yield from chunks.flush()

    expected = b"".join(piece + piece for piece in pieces)
    kept = list(body())  # every view alive: no buffer may be refilled under one
    assert b"".join(bytes(view) for view in kept) == expected
    assert len({id(view.obj) for view in kept}) == len(kept)
    sent = bytearray()
    buffers = {}  # the buffers themselves, so that no id is reused
    for view in body():  # the previous view dropped as the next comes: a few buffers in turn
        sent += view
        buffers[id(view.obj)] = view.obj
    assert bytes(sent) == expected
    assert len(buffers) <= 3
