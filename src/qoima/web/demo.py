"""Demo studies for ``qoima serve --demo``: small CR files made from CC BY Kermany images.

The committed files in demo_data/ were made once by ``python -m qoima.web.demo SOURCE_DIR``
from ../shared/data/cxr-kermany-pediatric (Kermany, Zhang, Goldbaum 2018, Mendeley Data v2,
doi:10.17632/rscbjbr9sj.2, CC BY 4.0). Names, IINs and facilities are synthetic.
"""

from __future__ import annotations

import datetime
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from qoima.archive.archive import Archive
from qoima.archive.worklist import set_facility_region
from qoima.dicom.iin import make_iin

logger = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).parent / "demo_data"
DEMO_ORIGIN = "demo"
ATTRIBUTION = ("Demo images: Kermany D, Zhang K, Goldbaum M (2018), Labeled Optical Coherence "
               "Tomography and Chest X-Ray Images for Classification, Mendeley Data v2, "
               "doi:10.17632/rscbjbr9sj.2, CC BY 4.0. Patients and facilities are synthetic.")

FACILITY_REGIONS = {
    "Атырау облыстық ауруханасы": "Атырау облысы",
    "Махамбет аудандық емханасы": "Атырау облысы",
    "Астана қалалық емханасы №4": "Астана",
    "Қарағанды облыстық балалар ауруханасы": "Қарағанды облысы",
    "Шымкент қалалық емханасы №2": "Шымкент",
}


@dataclass(frozen=True)
class DemoStudy:
    image: str  # file under the Kermany images/ folder
    patient_name: str
    birth_date: datetime.date
    sex: str
    institution_name: str
    study_date: datetime.date


_P = DemoStudy
DEMO_STUDIES = (
    _P("normal_IM-0435-0001.jpeg", "Серікова^Айгүл", datetime.date(2021, 3, 14), "F",
       "Махамбет аудандық емханасы", datetime.date(2026, 11, 20)),
    _P("normal_IM-0435-0001-0001.jpeg", "Серікова^Айгүл", datetime.date(2021, 3, 14), "F",
       "Атырау облыстық ауруханасы", datetime.date(2025, 11, 3)),
    _P("pneumonia_person1000_virus_1681.jpeg", "Нұрланұлы^Ерлан", datetime.date(2022, 7, 2),
       "M", "Астана қалалық емханасы №4", datetime.date(2026, 11, 24)),
    _P("pneumonia_person1000_bacteria_2931.jpeg", "Нұрланұлы^Ерлан", datetime.date(2022, 7, 2),
       "M", "Астана қалалық емханасы №4", datetime.date(2026, 2, 11)),
    _P("normal_IM-0453-0001.jpeg", "Иванов^Сергей^Петрович", datetime.date(2020, 12, 30), "M",
       "Қарағанды облыстық балалар ауруханасы", datetime.date(2026, 11, 25)),
    _P("normal_IM-0453-0001-0002.jpeg", "Иванов^Сергей^Петрович", datetime.date(2020, 12, 30),
       "M", "Қарағанды облыстық балалар ауруханасы", datetime.date(2025, 10, 17)),
    _P("pneumonia_person1002_bacteria_2933.jpeg", "Жұмабекова^Дана", datetime.date(2023, 1, 9),
       "F", "Атырау облыстық ауруханасы", datetime.date(2026, 11, 25)),
    _P("normal_IM-0115-0001.jpeg", "Ахметов^Бауыржан", datetime.date(2021, 9, 21), "M",
       "Шымкент қалалық емханасы №2", datetime.date(2026, 11, 24)),
    _P("pneumonia_person1021_virus_1711.jpeg", "Ким^Елена", datetime.date(2022, 4, 5), "F",
       "Махамбет аудандық емханасы", datetime.date(2026, 11, 23)),
    _P("normal_IM-0117-0001.jpeg", "Сәрсенбаев^Арман", datetime.date(2020, 6, 18), "M",
       "Астана қалалық емханасы №4", datetime.date(2026, 11, 22)),
    _P("pneumonia_person1033_bacteria_2966.jpeg", "Петрова^Ольга", datetime.date(2021, 11, 1),
       "F", "Шымкент қалалық емханасы №2", datetime.date(2026, 11, 25)),
    _P("normal_IM-0119-0001.jpeg", "Төлеуова^Мадина", datetime.date(2023, 5, 27), "F",
       "Атырау облыстық ауруханасы", datetime.date(2026, 11, 21)),
)


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None, entropy_srcs=["qoima-demo", *parts]))


def _age(birth_date: datetime.date, on: datetime.date) -> str:
    years = on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))
    return f"{years:03d}Y"


def build_demo_instance(study: DemoStudy, jpeg_grey: bytes, rows: int, columns: int) -> bytes:
    """One CR instance, JPEG baseline encapsulated, from a greyscale JPEG of rows x columns."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    iin = make_iin(study.birth_date, study.sex, 1000 + sum(map(ord, study.patient_name)) % 8000)
    key = f"{study.patient_name}|{study.study_date.isoformat()}"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    ds.SOPInstanceUID = _uid(key, "instance")
    ds.StudyInstanceUID = _uid(key, "study")
    ds.SeriesInstanceUID = _uid(key, "series")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.AccessionNumber = "D" + _uid(key, "acc")[-10:]
    ds.Modality = "CR"
    ds.Manufacturer = "Qoima demo"
    ds.InstitutionName = study.institution_name
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Кеуде қуысының рентгенографиясы"
    ds.SeriesDescription = "Chest PA"
    ds.PatientName = study.patient_name
    ds.PatientID = iin
    ds.IssuerOfPatientID = "KZ-IIN"
    ds.PatientBirthDate = study.birth_date.strftime("%Y%m%d")
    ds.PatientSex = study.sex
    ds.PatientAge = _age(study.birth_date, study.study_date)
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([jpeg_grey])
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def build_demo_files(source_dir: Path, out_dir: Path = DEMO_DIR) -> list[Path]:
    """Write the demo CR files from the Kermany images folder (run once by a developer)."""
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, study in enumerate(DEMO_STUDIES, start=1):
        with Image.open(source_dir / "images" / study.image) as image:
            grey = image.convert("L")
            buffer = io.BytesIO()
            grey.save(buffer, format="JPEG", quality=92)
            data = build_demo_instance(study, buffer.getvalue(), grey.height, grey.width)
        path = out_dir / f"demo{number:02d}.dcm"
        path.write_bytes(data)
        written.append(path)
    return written


def load_demo(archive: Archive) -> int:
    """Store the demo studies (identical re-stores are ignored) and their facilities' regions."""
    for institution_name, region in FACILITY_REGIONS.items():
        set_facility_region(archive, institution_name, region)
    stored = 0
    for path in sorted(DEMO_DIR.glob("*.dcm")):
        result = archive.store_instance(path.read_bytes(), DEMO_ORIGIN)
        stored += 0 if result.is_duplicate else 1
    logger.info("demo: %d new demo instances stored", stored)
    return stored


if __name__ == "__main__":
    for written_path in build_demo_files(Path(sys.argv[1])):
        logger.warning("wrote %s", written_path)
