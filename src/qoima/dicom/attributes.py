"""The indexed-attribute table: which DICOM attributes the index keeps, at which level.

It drives the index schema, C-FIND/QIDO-RS matching and the attributes returned, so adding an
attribute here is the whole change (plus an Alembic migration). PS3.18 Table 6.7.1-1 (QIDO-RS
required matching and return keys) and PS3.4 C.6 (Query/Retrieve information models).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


LEVEL_ORDER = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]


@dataclass(frozen=True)
class IndexedAttribute:
    keyword: str
    tag: int
    vr: str
    level: Level
    is_unique_key: bool = False

    @property
    def column(self) -> str:
        return to_snake_case(self.keyword)


@functools.cache
def to_snake_case(keyword: str) -> str:
    """``StudyInstanceUID`` -> ``study_instance_uid`` (acronyms stay one word)."""
    out: list[str] = []
    for index, char in enumerate(keyword):
        if char.isupper() and index and (
            not keyword[index - 1].isupper()
            or (index + 1 < len(keyword) and keyword[index + 1].islower())
        ):
            out.append("_")
        out.append(char.lower())
    return "".join(out)


_A = IndexedAttribute
INDEXED_ATTRIBUTES: tuple[IndexedAttribute, ...] = (
    _A("PatientID", 0x00100020, "LO", Level.PATIENT, is_unique_key=True),
    _A("IssuerOfPatientID", 0x00100021, "LO", Level.PATIENT),
    _A("PatientName", 0x00100010, "PN", Level.PATIENT),
    _A("PatientBirthDate", 0x00100030, "DA", Level.PATIENT),
    _A("PatientSex", 0x00100040, "CS", Level.PATIENT),
    _A("StudyInstanceUID", 0x0020000D, "UI", Level.STUDY, is_unique_key=True),
    _A("StudyDate", 0x00080020, "DA", Level.STUDY),
    _A("StudyTime", 0x00080030, "TM", Level.STUDY),
    _A("AccessionNumber", 0x00080050, "SH", Level.STUDY),
    _A("StudyID", 0x00200010, "SH", Level.STUDY),
    _A("StudyDescription", 0x00081030, "LO", Level.STUDY),
    _A("ReferringPhysicianName", 0x00080090, "PN", Level.STUDY),
    _A("InstitutionName", 0x00080080, "LO", Level.STUDY),
    _A("PatientAge", 0x00101010, "AS", Level.STUDY),
    _A("SeriesInstanceUID", 0x0020000E, "UI", Level.SERIES, is_unique_key=True),
    _A("Modality", 0x00080060, "CS", Level.SERIES),
    _A("SeriesNumber", 0x00200011, "IS", Level.SERIES),
    _A("SeriesDescription", 0x0008103E, "LO", Level.SERIES),
    _A("BodyPartExamined", 0x00180015, "CS", Level.SERIES),
    _A("PerformedProcedureStepStartDate", 0x00400244, "DA", Level.SERIES),
    _A("PerformedProcedureStepStartTime", 0x00400245, "TM", Level.SERIES),
    _A("SeriesDate", 0x00080021, "DA", Level.SERIES),
    _A("SeriesTime", 0x00080031, "TM", Level.SERIES),
    _A("SOPInstanceUID", 0x00080018, "UI", Level.IMAGE, is_unique_key=True),
    _A("SOPClassUID", 0x00080016, "UI", Level.IMAGE),
    _A("InstanceNumber", 0x00200013, "IS", Level.IMAGE),
    _A("Rows", 0x00280010, "US", Level.IMAGE),
    _A("Columns", 0x00280011, "US", Level.IMAGE),
    _A("BitsAllocated", 0x00280100, "US", Level.IMAGE),
    _A("NumberOfFrames", 0x00280008, "IS", Level.IMAGE),
    _A("ViewPosition", 0x00185101, "CS", Level.IMAGE),
    _A("ContentDate", 0x00080023, "DA", Level.IMAGE),
    _A("ContentTime", 0x00080033, "TM", Level.IMAGE),
)

BY_KEYWORD = {attribute.keyword: attribute for attribute in INDEXED_ATTRIBUTES}
BY_TAG = {attribute.tag: attribute for attribute in INDEXED_ATTRIBUTES}


@dataclass(frozen=True)
class ComputedAttribute:
    """Attributes the archive computes (PS3.4 C.3.4 "additional query/retrieve attributes")."""

    keyword: str
    tag: int
    vr: str
    level: Level


COMPUTED_ATTRIBUTES: tuple[ComputedAttribute, ...] = (
    ComputedAttribute("NumberOfPatientRelatedStudies", 0x00201200, "IS", Level.PATIENT),
    ComputedAttribute("NumberOfPatientRelatedSeries", 0x00201202, "IS", Level.PATIENT),
    ComputedAttribute("NumberOfPatientRelatedInstances", 0x00201204, "IS", Level.PATIENT),
    ComputedAttribute("ModalitiesInStudy", 0x00080061, "CS", Level.STUDY),
    ComputedAttribute("SOPClassesInStudy", 0x00080062, "UI", Level.STUDY),
    ComputedAttribute("NumberOfStudyRelatedSeries", 0x00201206, "IS", Level.STUDY),
    ComputedAttribute("NumberOfStudyRelatedInstances", 0x00201208, "IS", Level.STUDY),
    ComputedAttribute("NumberOfSeriesRelatedInstances", 0x00201209, "IS", Level.SERIES),
)
COMPUTED_BY_KEYWORD = {attribute.keyword: attribute for attribute in COMPUTED_ATTRIBUTES}


def attributes_at(level: Level) -> list[IndexedAttribute]:
    return [attribute for attribute in INDEXED_ATTRIBUTES if attribute.level == level]


def unique_key(level: Level) -> IndexedAttribute:
    return next(a for a in INDEXED_ATTRIBUTES if a.level == level and a.is_unique_key)
