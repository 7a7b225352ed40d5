"""The Native DICOM Model (PS3.19 A.1), the XML form of a dataset, made from its DICOM JSON
model (PS3.18 F.2), so both answers say the same. No I/O."""

from __future__ import annotations

import re
from typing import Any
from xml.etree import ElementTree

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_PN_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_PN_COMPONENTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
# Characters XML 1.0 cannot carry at all (PS3.19 leaves them out too)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def json_to_xml(model: dict[str, Any]) -> bytes:
    """One NativeDicomModel document (UTF-8, with XML declaration) for one JSON dataset."""
    root = ElementTree.Element("NativeDicomModel", xmlns=NAMESPACE)
    _attributes(root, model)
    # A raw CR would be read back as LF (XML 1.0 2.11): written as a character reference
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=True).replace(
        b"\r", b"&#13;")


def _attributes(parent: ElementTree.Element, model: dict[str, Any]) -> None:
    for tag in sorted(model):
        element = model[tag]
        vr = element.get("vr", "UN")
        attribute = ElementTree.SubElement(parent, "DicomAttribute", tag=tag, vr=vr)
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            attribute.set("keyword", keyword)
        if "BulkDataURI" in element:
            ElementTree.SubElement(attribute, "BulkData", uri=element["BulkDataURI"])
        elif "InlineBinary" in element:
            ElementTree.SubElement(attribute, "InlineBinary").text = element["InlineBinary"]
        for number, value in enumerate(element.get("Value", ()), start=1):
            if vr == "SQ":
                _attributes(ElementTree.SubElement(attribute, "Item", number=str(number)),
                            value or {})
            elif vr == "PN":
                _person_name(attribute, number, value or {})
            else:
                node = ElementTree.SubElement(attribute, "Value", number=str(number))
                if value is not None:
                    node.text = _NOT_XML.sub("", _text(value))


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _person_name(attribute: ElementTree.Element, number: int, groups: dict[str, str]) -> None:
    name = ElementTree.SubElement(attribute, "PersonName", number=str(number))
    for group in _PN_GROUPS:
        if not groups.get(group):
            continue
        node = ElementTree.SubElement(name, group)
        for component, text in zip(_PN_COMPONENTS, groups[group].split("^"), strict=False):
            if text:
                ElementTree.SubElement(node, component).text = _NOT_XML.sub("", text)
