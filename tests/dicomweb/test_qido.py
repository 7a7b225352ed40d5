"""QIDO-RS against a running server loaded with the samples: keys, JSON model, paging, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pydicom
import pytest
from dicomweb_client import DICOMwebClient

from tests.dicomweb.conftest import (
    CORPUS,
    LoadedServer,
    sample,
    split_multipart,
    stow,
    to_bytes,
    variant,
)
from tests.servers import QoimaServer

STUDY_UID = "0020000D"
SERIES_UID = "0020000E"
SOP_UID = "00080018"


def _headers(name: str) -> pydicom.Dataset:
    return pydicom.dcmread(sample(name), stop_before_pixels=True)


def _values(matches: list[dict[str, dict[str, list[str]]]], tag: str) -> list[str]:
    """The first value of ``tag`` in each match (UIDs and other strings)."""
    return [match[tag]["Value"][0] for match in matches]


def test_studies_carry_required_return_keys_with_vrs(loaded: LoadedServer) -> None:
    ds = _headers("ct/CT_small.dcm")
    response = httpx.get(loaded.url + "/studies", params={"StudyInstanceUID": ds.StudyInstanceUID})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    [match] = response.json()
    assert match["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": str(ds.PatientName)}]}
    assert match["00100020"] == {"vr": "LO", "Value": [ds.PatientID]}
    assert match["00080020"] == {"vr": "DA", "Value": [ds.StudyDate]}
    assert match["00080061"] == {"vr": "CS", "Value": ["CT"]}
    assert match["00201208"] == {"vr": "IS", "Value": [1]}
    assert match["00080056"] == {"vr": "CS", "Value": ["ONLINE"]}
    assert match["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{ds.StudyInstanceUID}")
    for tag in ("00080050", "00080090", "00100030", "00200010"):  # required even when empty
        assert match[tag]["vr"]
    assert list(match) == sorted(match)


def test_every_level_and_nested_form_finds_the_corpus(loaded: LoadedServer) -> None:
    client = DICOMwebClient(loaded.url)
    series = _headers("mr_series_adc/000000.dcm")
    found = client.search_for_instances(study_instance_uid=series.StudyInstanceUID,
                                        series_instance_uid=series.SeriesInstanceUID)
    expected = sorted(str(_headers(f"mr_series_adc/{n:06d}.dcm").SOPInstanceUID)
                      for n in range(20))
    assert sorted(_values(found, SOP_UID)) == expected
    in_study = client.search_for_series(study_instance_uid=series.StudyInstanceUID)
    assert series.SeriesInstanceUID in _values(in_study, SERIES_UID)
    assert len(client.search_for_instances(study_instance_uid=series.StudyInstanceUID)) >= 20
    every_instance = client.search_for_instances(search_filters={"limit": 1000})
    assert sorted(_values(every_instance, SOP_UID)) == sorted(loaded.files)
    every_series = client.search_for_series(search_filters={"Modality": "MR"})
    assert series.SeriesInstanceUID in _values(every_series, SERIES_UID)
    assert all(s["00080060"]["Value"] == ["MR"] for s in every_series)
    # across studies, series carry their study's keys (PS3.18 10.6.3.3)
    assert all("00100020" in s for s in every_series)


def test_paging_never_repeats_or_drops(loaded: LoadedServer) -> None:
    full = httpx.get(loaded.url + "/instances").json()
    assert len(full) == len(CORPUS)
    seen: list[str] = []
    for offset in range(0, len(full) + 5, 4):
        page = httpx.get(loaded.url + "/instances",
                         params={"limit": "4", "offset": str(offset)}).json()
        assert len(page) == min(4, max(len(full) - offset, 0))
        seen += _values(page, SOP_UID)
    assert seen == _values(full, SOP_UID)


def test_matching_rules(loaded: LoadedServer) -> None:
    ds = _headers("ct/CT_small.dcm")
    name = str(ds.PatientName)

    def studies(**params: str) -> list[str]:
        response = httpx.get(loaded.url + "/studies", params=params)
        assert response.status_code == 200, response.text
        return _values(response.json(), STUDY_UID)

    assert ds.StudyInstanceUID in studies(PatientName=name[:4].lower() + "*")
    assert ds.StudyInstanceUID in studies(**{"00100020": ds.PatientID})
    assert ds.StudyInstanceUID in studies(StudyDate=f"{ds.StudyDate}-")
    assert ds.StudyInstanceUID not in studies(StudyDate="19000101-19000102")
    assert ds.StudyInstanceUID in studies(ModalitiesInStudy="CT")
    assert ds.StudyInstanceUID in studies(
        StudyInstanceUID=f"1.2.3,{ds.StudyInstanceUID}")
    assert studies(PatientID="no-such-patient") == []


def test_includefield(loaded: LoadedServer) -> None:
    ds = _headers("ct/CT_small.dcm")
    url = f"{loaded.url}/studies/{ds.StudyInstanceUID}/series"
    plain = httpx.get(url).json()[0]
    assert "00180015" not in plain
    named = httpx.get(url, params={"includefield": "BodyPartExamined,00080021"}).json()[0]
    assert "00180015" in named
    assert "00080021" in named
    every = httpx.get(url, params={"includefield": "all"}).json()[0]
    assert set(named) <= set(every)
    assert every["00200011"]["vr"] == "IS"


def test_fuzzymatching_is_declared_unsupported(loaded: LoadedServer) -> None:
    response = httpx.get(loaded.url + "/studies", params={"fuzzymatching": "true"})
    assert response.status_code == 200
    assert "fuzzymatching" in response.headers["warning"]


@pytest.mark.parametrize("params", [
    {"StudyDate": "2020-13-45"},
    {"StudyDate": "yesterday"},
    {"StudyDate": "20200102-20200101"},
    {"NoSuchAttribute": "x"},
    {"includefield": "NotAKeyword"},
    {"limit": "-1"},
    {"limit": "lots"},
    {"limit": "99999999999999"},
    {"offset": "-5"},
    {"StudyInstanceUID": "1.2.abc"},
    {"fuzzymatching": "maybe"},
    {"Modality": "CT"},  # a series key on a study query (PS3.18: ModalitiesInStudy)
    {"PatientID": ["a", "b"]},
    {"00100010": "x", "PatientName": "y"},
    {"ReferencedStudySequence.00081150": "1.2.3"},
])
def test_bad_parameters_get_400(loaded: LoadedServer, params: dict[str, str | list[str]]
                                ) -> None:
    response = httpx.get(loaded.url + "/studies", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["detail"]


def test_unacceptable_accept_gets_406(loaded: LoadedServer) -> None:
    response = httpx.get(loaded.url + "/studies", headers={"Accept": "application/dicom+xml"})
    assert response.status_code == 406


def _xml_as_json(document: bytes) -> dict[str, dict[str, Any]]:
    """A NativeDicomModel document read back into the DICOM JSON model's shape (values as
    text), checked against PS3.19's structure on the way."""
    ns = "{http://dicom.nema.org/PS3.19/models/NativeDICOM}"
    root = ElementTree.fromstring(document)
    assert root.tag == f"{ns}NativeDicomModel"

    def dataset(node: ElementTree.Element) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for attribute in node.findall(f"{ns}DicomAttribute"):
            tag, vr = attribute.get("tag"), attribute.get("vr")
            assert tag
            assert vr
            element: dict[str, Any] = {"vr": vr}
            values: list[Any] = []
            for child in attribute:
                name = child.tag.removeprefix(ns)
                if name == "Value":
                    values.append(child.text or "")
                elif name == "PersonName":
                    values.append({group.tag.removeprefix(ns): "^".join(
                        component.text or "" for component in group) for group in child})
                elif name == "Item":
                    values.append(dataset(child))
                elif name == "BulkData":
                    element["BulkDataURI"] = child.get("uri")
                elif name == "InlineBinary":
                    element["InlineBinary"] = child.text
            if values:
                element["Value"] = values
            out[tag] = element
        return out

    return dataset(root)


def _as_text(model: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The JSON model with numbers as the text the XML carries, PN trailing ^ dropped and no
    empty value lists (a sequence of no items has no Item element)."""
    def value(vr: str, v: Any) -> Any:
        if vr == "SQ":
            return _as_text(v)
        if vr == "PN":
            return {group: text.rstrip("^") for group, text in v.items() if text}
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return "" if v is None else str(v)

    out = {}
    for tag, element in model.items():
        out[tag] = {"vr": element["vr"], **{k: v for k, v in element.items() if k not in
                                            ("vr", "Value")}}
        if element.get("Value"):
            out[tag]["Value"] = [value(element["vr"], v) for v in element["Value"]]
    return out


def test_qido_and_metadata_answer_in_xml_as_they_do_in_json(server: QoimaServer) -> None:
    kazakh = variant("ct/CT_small.dcm", PatientName="Әбілқайыр^Айгүл", PatientID="KZ-XML",
                     SpecificCharacterSet="ISO_IR 192")
    report = _headers("other/test-SR.dcm")  # nested sequences
    assert stow(server, [to_bytes(kazakh), sample("other/test-SR.dcm").read_bytes()]
                ).status_code == 200
    base = server.dicomweb_url
    xml = {"Accept": 'multipart/related; type="application/dicom+xml"'}
    for url, params in ((base + "/studies", {"PatientID": "KZ-XML"}),
                        (base + "/instances", {"includefield": "all"}),
                        (f"{base}/studies/{kazakh.StudyInstanceUID}/metadata", {}),
                        (f"{base}/studies/{report.StudyInstanceUID}/metadata", {})):
        as_json = httpx.get(url, params=params)
        as_xml = httpx.get(url, params=params, headers=xml)
        assert as_json.status_code == as_xml.status_code == 200, as_xml.text
        parts = split_multipart(as_xml)
        assert {h["Content-Type"] for h, _ in parts} == {"application/dicom+xml"}
        assert [_xml_as_json(body) for _, body in parts] == [_as_text(m) for m in as_json.json()]
    [(_, body)] = split_multipart(httpx.get(base + "/studies", headers=xml,
                                            params={"PatientID": "KZ-XML"}))
    assert "<FamilyName>Әбілқайыр</FamilyName><GivenName>Айгүл</GivenName>" in body.decode()
    preferred = httpx.get(base + "/studies", headers={
        "Accept": 'application/dicom+json; q=0.5, multipart/related; type="application/dicom+xml"'})
    assert preferred.headers["content-type"].startswith("multipart/related")


def test_cyrillic_and_kazakh_names_match_by_character(server: QoimaServer) -> None:
    russian = variant("ct/CT_small.dcm", PatientName="Иванов^Иван", PatientID="RU-1",
                      SpecificCharacterSet="ISO_IR 192")
    kazakh = variant("ct/CT_small.dcm", PatientName="Әбілқайыр^Айгүл", PatientID="KZ-1",
                     SpecificCharacterSet="ISO_IR 192")
    latin = variant("ct/CT_small.dcm", PatientName="Ivanov^Ivan", PatientID="EN-1")
    assert stow(server, [to_bytes(ds) for ds in (russian, kazakh, latin)]).status_code == 200
    clunie = Path(sample("malformed/Encodings__DavidClunie__SCSRUSS.dcm"))
    assert stow(server, [clunie.read_bytes()]).status_code == 200  # ISO_IR 144 (KOI)

    def names(pattern: str) -> list[str]:
        response = httpx.get(server.dicomweb_url + "/studies", params={"PatientName": pattern})
        assert response.status_code == 200
        return [m["00100010"]["Value"][0]["Alphabetic"] for m in response.json()]

    assert names("иванов*") == ["Иванов^Иван"]
    assert names("ИВАНОВ^ИВАН") == ["Иванов^Иван"]
    assert names("әбілқайыр*") == ["Әбілқайыр^Айгүл"]
    assert names("Ә?ІЛҚАЙЫР*") == ["Әбілқайыр^Айгүл"]
    assert names("Iv*") == ["Ivanov^Ivan"]
    clunie_name = str(pydicom.dcmread(clunie).PatientName)  # mixes Latin c, e, y, p into Cyrillic
    assert names(clunie_name.upper()) == [clunie_name]
    assert names("люксембург") == []  # all Cyrillic: differs by character, not by case


def test_limit_above_the_maximum_is_capped_with_a_warning(loaded: LoadedServer) -> None:
    response = httpx.get(loaded.url + "/instances", params={"limit": "20000"})
    assert response.status_code == 200
    assert "limit is capped" in response.headers["warning"]
    assert len(response.json()) == len(CORPUS)
    assert "warning" not in httpx.get(loaded.url + "/instances").headers
