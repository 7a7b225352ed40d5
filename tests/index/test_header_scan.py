"""The fast header reading (``scan``) gives exactly what pydicom's full reading gives: the same
indexed values, UIDs and transfer syntax, or the same refusal, for every sample (malformed ones
included) and for edge cases made here."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from qoima.app import configure_libraries
from qoima.dicom import header
from qoima.errors import InvalidDicom
from tests.factories import make_instance
from tests.servers import SAMPLES, well_formed_samples

LIMITS = {"max_image_pixels": 1 << 28, "max_sequence_depth": 32}


def _parse(data: bytes) -> object:
    try:
        return header.parse_instance(data, **LIMITS)
    except InvalidDicom as exc:
        return f"refused: {exc}"


def _assert_same_as_pydicom(data: bytes, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Compares both readings; returns whether the fast one read it (rather than handing it
    to pydicom)."""
    configure_libraries()  # the server's lenient reading
    fast = _parse(data)
    scanned = len(data) >= 8 and header.scan(data, LIMITS["max_sequence_depth"]) is not None
    with monkeypatch.context() as patch:
        patch.setattr(header, "scan", lambda data, depth: None)
        assert _parse(data) == fast
    return scanned


def _part10(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("path", well_formed_samples(), ids=lambda p: p.name)
def test_samples_read_the_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scanned = _assert_same_as_pydicom(path.read_bytes(), monkeypatch)
    syntax = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if syntax.is_little_endian and not syntax.is_deflated:
        assert scanned, "a well-formed little endian file should take the fast reading"


@pytest.mark.parametrize("path", sorted((SAMPLES / "malformed").glob("*.dcm")),
                         ids=lambda p: p.name)
def test_malformed_samples_read_or_refused_the_same(path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = path.read_bytes()
    _assert_same_as_pydicom(data, monkeypatch)
    for cut in (len(data) // 3, len(data) - 3):  # truncated in the header, in the pixels
        _assert_same_as_pydicom(data[:cut], monkeypatch)


def _nested(depth: int, undefined: bool) -> Sequence:
    item = Dataset()
    item.CodeValue = "T-D3000"
    if depth > 1:
        item.ContentSequence = _nested(depth - 1, undefined)
        item.ContentSequence.is_undefined_length = undefined  # type: ignore[attr-defined]
    item.is_undefined_length_sequence_item = undefined
    return Sequence([item])


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                         ids=lambda s: s.name)
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("depth", [1, 32, 33])
def test_nested_sequences_read_or_refused_the_same(syntax: str, undefined: bool, depth: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_instance()
    ds.ContentSequence = _nested(depth, undefined)
    scanned = _assert_same_as_pydicom(_part10(ds, syntax), monkeypatch)
    assert scanned == (depth <= 32)
    assert isinstance(_parse(_part10(ds, syntax)), str) == (depth > 32)


def test_encapsulated_pixel_data_and_what_follows_read_the_same(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_instance()
    ds.PixelData = pydicom.encaps.encapsulate([b"\x01\x02" * 64])
    ds["PixelData"].VR = "OB"
    ds.DataSetTrailingPadding = b"\0" * 16
    data = _part10(ds, RLELossless)
    assert _assert_same_as_pydicom(data, monkeypatch)
    _assert_same_as_pydicom(data[:-30], monkeypatch)  # the fragment cut short
