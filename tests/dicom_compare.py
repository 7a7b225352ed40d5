"""Dataset-for-dataset comparison of a sent file and what came back."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset


def comparable(ds: Dataset) -> dict[int, object]:
    """Elements by tag, without group lengths (PS3.5 7.2: retired, may be dropped) and
    Data Set Trailing Padding (PS3.10 7.2: may be removed by any application)."""
    out: dict[int, object] = {}
    for element in ds:
        if element.tag.element == 0 or element.tag == 0xFFFCFFFC:
            continue
        if element.VR == "SQ":
            out[int(element.tag)] = [comparable(item) for item in element.value]
        else:
            value = element.value
            if isinstance(value, bytes):
                value = value.rstrip(b"\0")
            out[int(element.tag)] = value
    return out


def same_dataset(left: Dataset | Path | bytes, right: Dataset | Path | bytes) -> bool:
    return comparable(_load(left)) == comparable(_load(right))


def _load(item: Dataset | Path | bytes) -> Dataset:
    if isinstance(item, Dataset):
        return item
    if isinstance(item, bytes):
        import io

        return pydicom.dcmread(io.BytesIO(item), force=True)
    return pydicom.dcmread(item, force=True)
