"""The DICOM JSON model (PS3.18 F.2): datasets and index rows to JSON objects. No I/O."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from qoima.dicom.attributes import BY_KEYWORD, COMPUTED_BY_KEYWORD

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
    """A dataset as DICOM JSON; values above the threshold become BulkDataURIs."""
    if bulk_data_uri is None:
        return ds.to_json_dict(bulk_data_threshold=1 << 62)
    return ds.to_json_dict(bulk_data_threshold=BULK_DATA_THRESHOLD_BYTES,
                           bulk_data_element_handler=bulk_data_uri)
