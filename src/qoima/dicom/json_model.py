"""The DICOM JSON model (PS3.18 F.2): datasets and index rows to JSON objects. No I/O."""

from __future__ import annotations

import base64
import functools
import struct
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from qoima.dicom.attributes import BY_KEYWORD, COMPUTED_BY_KEYWORD
from qoima.dicom.header import raw_strings, simple_encoding

BULK_DATA_THRESHOLD_BYTES = 1024
_NUMBER_VRS = {"IS", "US", "UL", "SS", "SL", "UV", "SV", "FL", "FD", "DS"}
# Attributes the archive knows without an index column (PS3.18 Table 10.6.3-3 return keys).
EXTRA_VRS = {"RetrieveURL": "UR", "InstanceAvailability": "CS",
             "TimezoneOffsetFromUTC": "SH", "SpecificCharacterSet": "CS"}


@functools.cache
def vr_of(keyword: str) -> str:
    """The VR of an indexed, computed or dictionary attribute."""
    if keyword in BY_KEYWORD:
        return BY_KEYWORD[keyword].vr
    if keyword in COMPUTED_BY_KEYWORD:
        return COMPUTED_BY_KEYWORD[keyword].vr
    if keyword in EXTRA_VRS:
        return EXTRA_VRS[keyword]
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword} is not a DICOM keyword")
    return str(dictionary_VR(tag)).split(" or ")[0]


@functools.cache
def tag_hex(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword} is not a DICOM keyword")
    return f"{tag:08X}"


def keyword_for(tag_or_keyword: str) -> str:
    """``PatientName`` or ``00100010`` -> ``PatientName``; KeyError for anything else."""
    if tag_for_keyword(tag_or_keyword) is not None:
        return tag_or_keyword
    if len(tag_or_keyword) == 8:
        try:
            keyword = keyword_for_tag(int(tag_or_keyword, 16))
        except ValueError:
            keyword = ""
        if keyword:
            return str(keyword)
    raise KeyError(f"{tag_or_keyword[:40]!r} is not a DICOM keyword or tag")


def element_json(vr: str, value: Any) -> dict[str, Any]:
    """One attribute from the index's form (str, int, ``\\``-joined multi-values, None)."""
    if value is None or value == "":
        return {"vr": vr}
    if vr == "PN":
        # PS3.18 F.2.2: one object per name, "=" separates the component groups
        names = []
        for name in str(value).split("\\"):
            groups = name.split("=")
            names.append({label: group for label, group in
                          zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False)
                          if group})
        return {"vr": vr, "Value": names}
    if isinstance(value, int | float):
        return {"vr": vr, "Value": [value]}
    parts = str(value).split("\\")
    if vr in _NUMBER_VRS:
        numbers: list[Any] = []
        for part in parts:
            part = part.strip()
            if not part:
                continue
            number = float(part) if vr in ("DS", "FL", "FD") else int(float(part))
            numbers.append(number)
        return {"vr": vr, "Value": numbers} if numbers else {"vr": vr}
    return {"vr": vr, "Value": parts}


def row_to_json(row: dict[str, Any], keywords: tuple[str, ...]) -> dict[str, Any]:
    """An index row (keyword -> value) as a DICOM JSON object, ordered by tag."""
    return {tag: element_json(vr, row.get(keyword)) for keyword, tag, vr in _layout(keywords)}


@functools.lru_cache(maxsize=256)
def _layout(keywords: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(keyword, tag, VR) in tag order: DICOM JSON objects list attributes by tag."""
    return sorted(((k, tag_hex(k), vr_of(k)) for k in keywords), key=lambda item: item[1])


def dataset_to_json(ds: Dataset, bulk_data_uri: Callable[[DataElement], str] | None = None
                    ) -> dict[str, Any]:
    """A dataset as DICOM JSON; values above the threshold become BulkDataURIs.

    The output is pydicom's ``to_json_dict``, but the common elements of a header just read from
    a file (explicit VR little endian text, numbers and short binary values) are converted from
    their raw bytes here, about four times faster; anything else goes through pydicom."""
    if bulk_data_uri is None:
        return _dataset_json(ds, None, 1 << 62)
    return _dataset_json(ds, bulk_data_uri, BULK_DATA_THRESHOLD_BYTES)


# Text pydicom never splits (pydicom.values.convert_single_string); the split kinds are read
# by header.raw_strings.
_TEXT_SINGLE_VRS = {"LT", "ST", "UT"}
_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d",
                   "UV": "Q", "SV": "q"}
_BYTES_VRS = {"OB", "OD", "OF", "OL", "OV", "OW"}


def _dataset_json(ds: Dataset, bulk_data_uri: Callable[[DataElement], str] | None,
                  threshold: int) -> dict[str, Any]:
    encoding = simple_encoding(ds)
    out: dict[str, Any] = {}
    for tag in list(ds._dict):
        raw = ds._dict[tag]
        element = None
        if isinstance(raw, RawDataElement) and raw.is_little_endian and raw.VR is not None:
            element = _raw_json(raw, encoding, bulk_data_uri, threshold)
        if element is None:
            full = ds[tag]
            element = _plain_json(full)
        if element is None:
            if full.VR == "SQ":
                element = {"vr": "SQ", "Value": [_dataset_json(item, bulk_data_uri, threshold)
                                                 for item in full.value]}
            else:
                element = full.to_json_dict(bulk_data_uri, threshold)
        out[f"{tag:08X}"] = element
    return out


def _plain_json(element: DataElement) -> dict[str, Any] | None:
    """A decoded single string or number as DICOM JSON (what a STOW-RS answer is made of), as
    pydicom writes it; None to leave it to pydicom."""
    value = element.value
    if element.VR in _PLAIN_TEXT_VRS and isinstance(value, str):
        return {"vr": element.VR, "Value": [str(value)]} if value else {"vr": element.VR}
    if element.VR in ("US", "UL") and type(value) is int:
        return {"vr": element.VR, "Value": [value]}
    return None


_PLAIN_TEXT_VRS = {"AE", "CS", "LO", "SH", "UI", "UR"}


def _raw_json(raw: RawDataElement, encoding: str | None,
              bulk_data_uri: Callable[[DataElement], str] | None, threshold: int
              ) -> dict[str, Any] | None:
    """One undecoded element as DICOM JSON, or None to leave it to pydicom."""
    vr = str(raw.VR)
    value: bytes = raw.value or b""
    try:
        if vr in _BYTES_VRS:
            if not value:
                return {"vr": vr}
            if bulk_data_uri is not None and len(value) > (threshold // 4) * 3:
                return None  # the URI callback wants a DataElement: pydicom makes it
            return {"vr": vr, "InlineBinary": base64.b64encode(value).decode()}
        if vr in _BINARY_FORMATS:
            size = struct.calcsize(_BINARY_FORMATS[vr])
            if len(value) % size:
                return None
            numbers = list(struct.unpack(f"<{len(value) // size}{_BINARY_FORMATS[vr]}", value))
            return {"vr": vr, "Value": numbers} if numbers else {"vr": vr}
        if vr == "PN":
            if encoding is None:
                return None
            text = value.decode(encoding).rstrip("\0 ")
            if "=" in text or "\\" in text:
                return None
            return {"vr": vr, "Value": [{"Alphabetic": text}]} if text else {"vr": vr}
        parts = raw_strings(raw, encoding)
        if parts is not None:
            if parts == [""]:
                return {"vr": vr}
            if vr == "DS" or vr == "IS":
                kind = float if vr == "DS" else int
                return {"vr": vr, "Value": [kind(part) for part in parts]}
            return {"vr": vr, "Value": parts}
        if encoding is None:
            return None
        if vr in _TEXT_SINGLE_VRS:
            text = value.decode(encoding).rstrip("\0 ")
            return {"vr": vr, "Value": [text]} if text else {"vr": vr}
    except (UnicodeDecodeError, ValueError, struct.error):
        return None
    return None
