"""Small DICOM instances for tests, with deterministic UIDs."""

from __future__ import annotations

import io

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
PREFIX = "1.2.826.0.1.3680043.10.1431.9."


def uid_for(*parts: object) -> str:
    return generate_uid(prefix=PREFIX, entropy_srcs=[str(p) for p in parts])


def make_instance(
    *,
    patient_id: str = "PAT001",
    patient_name: str = "DOE^JOHN",
    study: str = "study-1",
    series: str = "series-1",
    number: int = 1,
    modality: str = "CT",
    study_date: str = "20240102",
    study_time: str = "101500",
    accession: str = "ACC001",
    charset: str | None = None,
    rows: int = 8,
    columns: int = 8,
    institution: str = "Atyrau Regional Hospital",
    extra: dict[str, object] | None = None,
) -> Dataset:
    """A valid 8x8 16-bit image; UIDs derive from the study/series/number names."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CT_IMAGE_STORAGE if modality == "CT" else CR_IMAGE_STORAGE
    ds.SOPInstanceUID = uid_for(study, series, number)
    ds.StudyInstanceUID = uid_for(study)
    ds.SeriesInstanceUID = uid_for(study, series)
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = "19800101"
    ds.PatientSex = "F"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = accession
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.InstitutionName = institution
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = (np.arange(rows * columns, dtype=np.uint16) * (number + 1)) % 4096
    ds.PixelData = pixels.reshape(rows, columns).tobytes()
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
