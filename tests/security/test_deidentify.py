"""De-identification checked tag by tag: no identifying value of the original survives anywhere
in the output (sequences and file meta included), on factory instances and on every readable file
in ../shared/data/dicom-samples/; pseudonyms and UIDs are consistent per project."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from qoima.dicom.deidentify import deidentify
from tests.factories import make_instance
from tests.servers import SAMPLES

# Attributes whose values identify the patient, a person or a place in the original.
IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs",
               "OtherPatientNames", "PatientAddress", "PatientTelephoneNumbers",
               "AccessionNumber", "InstitutionName", "InstitutionAddress",
               "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
               "NameOfPhysiciansReadingStudy", "RequestingPhysician", "StationName",
               "DeviceSerialNumber", "PatientMotherBirthName", "StudyID",
               "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
               "FrameOfReferenceUID", "MediaStorageSOPInstanceUID")
# Must be absent after the Basic Profile (X actions) without the Retain Patient
# Characteristics option.
REMOVED = ("PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "OtherPatientIDs",
           "ImageComments", "AdditionalPatientHistory", "PatientComments", "EthnicGroup")
DATES = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "PatientBirthDate")


def _sample_files() -> list[Path]:
    if not SAMPLES.is_dir():
        return []
    files = []
    for path in sorted(SAMPLES.rglob("*.dcm")):
        try:
            pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # unreadable on purpose (malformed/): nothing to export
            continue
        files.append(path)
    return files


def _values(ds: Dataset) -> Iterator[tuple[str, str]]:
    """Every (keyword, text value) in the dataset, sequences and file meta included."""
    for element in [*getattr(ds, "file_meta", Dataset()), *ds]:
        if element.VR == "SQ":
            for item in element.value:
                yield from _values(item)
        elif element.VR not in ("OB", "OW", "OF", "OD", "OL", "UN") and element.value is not None:
            try:
                yield element.keyword, str(element.value)
            except Exception:  # undecodable text in a malformed sample
                continue


# Kept by the profile: equipment make and model. A station named after its maker ("TOSHIBA")
# is no leak when the same word stays as the Manufacturer.
KEPT = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions", "Modality")


def _identifying_values(ds: Dataset) -> set[str]:
    found = set()
    kept = {value.strip() for keyword, value in _values(ds) if keyword in KEPT}
    for element_keyword, value in _values(ds):
        if element_keyword in IDENTIFYING and len(value.strip()) >= 4 \
                and value.strip() not in kept:
            found.add(value.strip())
    return found


def _check(original: Dataset, output: Dataset) -> None:
    secrets_ = _identifying_values(original)
    kept = [value for keyword, value in _values(original) if keyword in KEPT]
    long_secrets = {s for s in secrets_ if len(s) >= 6 and not any(s in k for k in kept)}
    for keyword, value in _values(output):
        for secret in long_secrets:  # anywhere, as a substring
            assert secret not in value, f"{keyword} keeps an identifying value"
        if keyword in IDENTIFYING:  # short ones (IDs like "4321"): not in their own attribute
            assert value.strip() not in secrets_ or not value.strip(), \
                f"{keyword} keeps its value"
    for keyword in REMOVED:
        assert keyword not in output
    assert not any(element.tag.is_private for element in output)
    for keyword in DATES:
        original_value = str(original.get(keyword, "") or "")
        if len(original_value) == 8:
            assert str(output.get(keyword, "")) != original_value, keyword
    assert output.PatientIdentityRemoved == "YES"
    assert output.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {item.CodeValue for item in output.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113105", "113107"}


def _identified_instance() -> Dataset:
    return make_instance(patient_id="870412300123", patient_name="IVANOVA^ANNA^SERGEEVNA",
                         institution="Astana City Hospital 1", accession="ACC77881",
                         extra={"PatientAge": "038Y", "PatientWeight": "61",
                                "PatientAddress": "Kabanbay Batyr 53, Astana",
                                "OtherPatientIDs": "KZ-77-1234",
                                "ReferringPhysicianName": "NURLANOV^DAUREN",
                                "StudyDescription": "CHEST IVANOVA follow-up",
                                "SeriesDescription": "PA view",
                                "ImageComments": "patient called Anna, room 12",
                                "StationName": "ASTANA-CR-01",
                                "DeviceSerialNumber": "SN-99812"})


def test_factory_instance_has_no_phi_left() -> None:
    original = _identified_instance()
    _check(original, deidentify(original, "project-secret").dataset)


def test_clean_descriptors_keep_safe_text_only() -> None:
    output = deidentify(_identified_instance(), "project-secret").dataset
    assert "StudyDescription" not in output  # it named the patient
    assert output.SeriesDescription == "PA view"


def test_original_dataset_is_untouched() -> None:
    original = _identified_instance()
    deidentify(original, "project-secret")
    assert original.PatientName == "IVANOVA^ANNA^SERGEEVNA"


def test_pseudonyms_and_uids_are_consistent_per_project() -> None:
    first = deidentify(_identified_instance(), "project-one").dataset
    again = deidentify(_identified_instance(), "project-one").dataset
    other = deidentify(_identified_instance(), "project-two").dataset
    for keyword in ("PatientID", "PatientName", "StudyInstanceUID", "SOPInstanceUID",
                    "StudyDate"):
        assert first.get(keyword) == again.get(keyword)
        assert first.get(keyword) != other.get(keyword)
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID


def test_dates_shift_together() -> None:
    base = _identified_instance()
    later = _identified_instance()
    later.StudyDate = "20240112"
    shifted_base = deidentify(base, "p").dataset.StudyDate
    shifted_later = deidentify(later, "p").dataset.StudyDate
    from datetime import datetime

    def days(value: str) -> int:
        return (datetime.strptime(value, "%Y%m%d")).toordinal()  # noqa: DTZ007 - dates only

    assert days(shifted_later) - days(shifted_base) == 10


def test_burned_in_annotation_is_flagged() -> None:
    capture = _identified_instance()
    capture.Modality = "US"
    assert deidentify(capture, "p").has_burned_in_risk
    capture.BurnedInAnnotation = "NO"
    assert not deidentify(capture, "p").has_burned_in_risk
    assert not deidentify(_identified_instance(), "p").has_burned_in_risk


@pytest.mark.parametrize("path", _sample_files(), ids=lambda p: p.name)
def test_shared_sample_has_no_phi_left(path: Path) -> None:
    original = pydicom.dcmread(path)
    result = deidentify(original, "samples-project")
    _check(original, result.dataset)
    if "SOPInstanceUID" not in original:
        return  # not an instance the archive would hold; nothing to write back
    buffer = io.BytesIO()
    result.dataset.save_as(buffer, enforce_file_format=True)
    _check(original, pydicom.dcmread(io.BytesIO(buffer.getvalue())))


def test_cli_export_writes_deidentified_files(tmp_path: Path, samples: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    run = [sys.executable, "-m", "qoima"]
    subprocess.run([*run, "import", *data, str(samples / "ct_series_3slice")], check=True,
                   capture_output=True, timeout=120)
    study = str(pydicom.dcmread(samples / "ct_series_3slice" / "01.dcm").StudyInstanceUID)
    out = tmp_path / "out"
    result = subprocess.run([*run, "export", *data, "--deidentify", "--project", "lung",
                             f"StudyInstanceUID={study}", "--out", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["exported"] == 3
    files = sorted(out.rglob("*.dcm"))
    assert len(files) == 3
    originals = {p.name: pydicom.dcmread(p) for p in (samples / "ct_series_3slice").iterdir()}
    exported = [pydicom.dcmread(f) for f in files]
    by_number = {int(ds.InstanceNumber): ds for ds in exported}
    for original in originals.values():
        _check(original, by_number[int(original.InstanceNumber)])
    assert len({ds.PatientID for ds in exported}) == 1
    audit = subprocess.run([*run, "audit", "export", "--fhir", *data], capture_output=True,
                           text=True, check=True, timeout=120).stdout
    assert '"code": "110106"' in audit  # the export itself is on the trail


def test_rest_export_zip_is_deidentified(tmp_path: Path) -> None:
    """Through the archive, as the REST endpoint runs it (the endpoint itself: test_matrix)."""
    from qoima.app import build_archive
    from qoima.archive import export
    from qoima.config import load_settings
    from tests.factories import to_bytes

    archive = build_archive(load_settings(data_dir=tmp_path / "data"))
    original = _identified_instance()
    archive.store_instance(to_bytes(original), "test")
    data, result = export.export_to_zip(archive, "zip-project", export.study_query(
        {"PatientID": "870412300123"}))
    archive.database.dispose()
    assert result.exported == 1
    with zipfile.ZipFile(io.BytesIO(data)) as bundle:
        names = [n for n in bundle.namelist() if n.endswith(".dcm")]
        output = pydicom.dcmread(io.BytesIO(bundle.read(names[0])))
    _check(original, output)
