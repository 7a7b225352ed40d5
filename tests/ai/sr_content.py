"""Reading back what an AI SR says: flatten the content tree into (concept, value) pairs."""

from __future__ import annotations

from collections.abc import Iterator

from pydicom.dataset import Dataset


def content_items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def concept(item: Dataset) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def probabilities(ds: Dataset) -> list[float]:
    return [float(item.MeasuredValueSequence[0].NumericValue) for item in content_items(ds)
            if item.ValueType == "NUM" and concept(item) == "Probability"]


def texts(ds: Dataset, name: str) -> set[str]:
    return {str(item.TextValue) for item in content_items(ds)
            if item.ValueType == "TEXT" and concept(item) == name}


def finding_codes(ds: Dataset) -> set[tuple[str, str]]:
    """(scheme, value) of every Finding coded in the report."""
    return {(str(item.ConceptCodeSequence[0].CodingSchemeDesignator),
             str(item.ConceptCodeSequence[0].CodeValue))
            for item in content_items(ds)
            if item.ValueType == "CODE" and concept(item) == "Finding"}
