"""Fixtures for AI tests: a tiny ONNX model, an in-process archive, chest DICOM variants."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from qoima.ai.registry import Registry
from qoima.ai.worker import JobRunner, WorkerOptions
from qoima.app import build_archive, configure_libraries
from qoima.archive import Archive
from qoima.archive.jobs import Jobs, ScheduledJob
from qoima.config import load_settings
from tests.ai.tiny_model import write_tiny_model
from tests.factories import uid_for
from tests.servers import SAMPLES

CHEST_CR = SAMPLES / "cr_dx" / "RG1_UNCI.dcm"  # MONOCHROME1 15-bit chest PA, uncompressed
CHEST_JPEG = SAMPLES / "cr_dx" / "SIIM_chest_CR_850819.dcm"
EXTREMITY_CR = SAMPLES / "cr_dx" / "RG3_RLE.dcm"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    write_tiny_model(root / "tiny")
    return root


@pytest.fixture
def archive(tmp_path: Path, database_url: str | None) -> Iterator[Archive]:
    configure_libraries()
    built = build_archive(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    yield built
    built.database.dispose()


@pytest.fixture
def registry(tiny_models_dir: Path) -> Registry:
    return Registry.discover([tiny_models_dir], include_shipped=False, intra_op_threads=1)


@pytest.fixture
def runner(archive: Archive, registry: Registry) -> JobRunner:
    return JobRunner(archive, registry, WorkerOptions(thread_niceness=0, backoff_base_s=2.0,
                                                     ingest_quiet_s=0.0))


def chest_bytes(study: str, *, source: Path = CHEST_CR, view_position: str | None = None,
                corrupt_pixels: bool = False, body_part: str | None = None,
                number: int = 1) -> bytes:
    """A real radiograph under new UIDs (one study per name), optionally altered."""
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = uid_for(study)
    ds.SeriesInstanceUID = uid_for(study, "series", number)
    ds.SOPInstanceUID = uid_for(study, "series", number, "instance")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if view_position is not None:
        ds.ViewPosition = view_position
    if body_part is not None:
        ds.BodyPartExamined = body_part
    if corrupt_pixels:
        # A JPEG stream that starts well and then is garbage: the header is fine, decoding is not.
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xdb" + bytes(range(256)) * 8 + b"\xff\xd9"])
        ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def schedule_now(archive: Archive, registry: Registry) -> list[ScheduledJob]:
    """Schedule as if every study were already stable."""
    created, _ = Jobs(archive).schedule_stable_studies(time.time() + 1, 0.0,
                                                       registry.choose_jobs)
    return created
