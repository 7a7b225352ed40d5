"""De-identification per PS3.15 Annex E: the Basic Application Level Confidentiality Profile with
the Retain Longitudinal Temporal Information with Modified Dates and Clean Descriptors options.

dicognito does the replacements (names, IDs, UIDs, addresses, equipment, dates shifted by one
offset), seeded with the project's secret so that pseudonyms, UIDs and the date shift are the same
for every export of one project and cannot be reversed without the secret. On top of it we remove
what the Basic Profile lists for removal that dicognito keeps, clean the descriptors, drop private
and overlay/curve groups, and flag instances that may carry burned-in annotation. No I/O here.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from dicognito.anonymizer import Anonymizer
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

# PS3.15 Table E.1-1 attributes whose Basic Profile action is X (remove), or Z/D where an empty
# or removed value is acceptable, that dicognito does not already replace.
REMOVED_KEYWORDS = (
    "AdditionalPatientHistory", "AdmissionID", "AdmittingDiagnosesCodeSequence",
    "AdmittingDiagnosesDescription", "Allergies", "Arbitrary", "AuthorObserverSequence",
    "BranchOfService", "CountryOfResidence", "CurrentPatientLocation",
    "CustodialOrganizationSequence",
    "DataSetTrailingPadding", "DeviceSerialNumber", "DigitalSignaturesSequence",
    "DischargeDiagnosisDescription", "EthnicGroup", "FrameComments", "GraphicAnnotationSequence",
    "IdentifyingComments", "ImageComments", "IssuerOfAdmissionID", "IssuerOfPatientID",
    "MedicalAlerts", "MedicalRecordLocator", "MilitaryRank", "ModifiedAttributesSequence",
    "NamesOfIntendedRecipientsOfResults", "Occupation", "OriginalAttributesSequence",
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientAddress",
    "PatientAge", "PatientBirthName", "PatientBirthTime", "PatientComments",
    "PatientInsurancePlanCodeSequence", "PatientMotherBirthName",
    "PatientPrimaryLanguageCodeSequence",
    "PatientReligiousPreference", "PatientSexNeutered", "PatientSize", "PatientState",
    "PatientTelecomInformation", "PatientTelephoneNumbers", "PatientWeight",
    "PerformedProcedureStepDescription", "PregnancyStatus", "ReferencedPatientPhotoSequence",
    "ReferencedPatientSequence", "RegionOfResidence", "RequestAttributesSequence",
    "RequestedProcedureComments", "ResultsComments", "ServiceEpisodeDescription",
    "ServiceEpisodeID", "SmokingStatus", "SpecialNeeds", "StudyComments", "TextComments",
    "TextString", "VisitComments", "InterpretationText", "ContentSequence",
    "AcquisitionComments", "DerivationDescription", "ScheduledProcedureStepDescription",
    "ReasonForTheRequestedProcedure", "ReasonForStudy", "RequestingPhysician",
    "InstitutionalDepartmentName", "InstitutionAddress", "PersonAddress",
    "PersonTelephoneNumbers", "OrderCallbackPhoneNumber", "OrderEnteredBy",
    "OrderEntererLocation",
)
# Clean Descriptors option (113105): kept only when they carry nothing of the patient.
DESCRIPTOR_KEYWORDS = (
    "StudyDescription", "SeriesDescription", "ProtocolName", "BodyPartExamined",
    "RequestedProcedureDescription", "ImageType", "ViewPosition", "Laterality",
)
_DATE_LIKE = re.compile(r"\d{4}[-./]?\d{2}[-./]?\d{2}|\d{6,}")
_BURNED_IN_MODALITIES = {"US", "ES", "XC", "SC", "OT", "DOC", "GM", "SM"}
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
DEIDENTIFICATION_CODES = (  # PS3.16 CID 7050
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)


@dataclass(frozen=True)
class DeidentifiedInstance:
    dataset: Dataset
    has_burned_in_risk: bool  # the image may show identifying text in its pixels


def may_have_burned_in_annotation(ds: Dataset) -> bool:
    """PS3.3 C.7.6.1.1.7: trust BurnedInAnnotation; otherwise suspect captures and ultrasound."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag in ("YES", "NO"):
        return flag == "YES"
    return (str(ds.get("Modality", "")) in _BURNED_IN_MODALITIES
            or str(ds.get("SOPClassUID", "")).startswith(_SECONDARY_CAPTURE_PREFIX))


def _identifying_tokens(ds: Dataset) -> set[str]:
    tokens: set[str] = set()
    for keyword in ("PatientName", "PatientID", "OtherPatientNames", "PatientBirthName",
                    "ReferringPhysicianName", "AccessionNumber", "InstitutionName"):
        value = str(ds.get(keyword, "") or "")
        tokens.update(t.lower() for t in re.split(r"[\^=\s,]+", value) if len(t) >= 3)
    return tokens


def _clean_descriptor(value: str, tokens: set[str]) -> str | None:
    lowered = value.lower()
    if _DATE_LIKE.search(value) or any(token in lowered for token in tokens):
        return None
    return value


def _strip(ds: Dataset) -> None:
    for element in list(ds):
        group = element.tag.group
        if element.tag.is_private or 0x5000 <= group <= 0x50FF or (
                0x6000 <= group <= 0x60FF and element.tag.element != 0x0010
                and element.tag.element != 0x0011):
            # private tags; curves (50xx) and overlays (60xx) except rows/columns
            del ds[element.tag]
        elif element.keyword in REMOVED_KEYWORDS:
            del ds[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _strip(item)


def _complete_file_meta(ds: Dataset) -> None:
    """Files that arrived without meta still leave as valid Part 10 (PS3.10 7.1)."""
    meta = ds.file_meta
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "TransferSyntaxUID" not in meta:
        is_implicit, is_little = ds.original_encoding
        meta.TransferSyntaxUID = (ExplicitVRBigEndian if is_little is False
                                  else ImplicitVRLittleEndian if is_implicit
                                  else ExplicitVRLittleEndian)


def deidentify(ds: Dataset, project_secret: str) -> DeidentifiedInstance:
    """De-identify a copy of ``ds`` for the project whose HMAC key is ``project_secret``."""
    out = copy.deepcopy(ds)
    if not hasattr(out, "file_meta"):
        out.file_meta = FileMetaDataset()
    tokens = _identifying_tokens(ds)
    is_burned_in = may_have_burned_in_annotation(ds)
    _strip(out)
    for keyword in DESCRIPTOR_KEYWORDS:
        if keyword in out and out[keyword].VR in ("LO", "SH", "CS", "ST", "LT"):
            cleaned = _clean_descriptor(str(out[keyword].value or ""), tokens)
            if cleaned is None:
                del out[keyword]
    Anonymizer(seed=project_secret).anonymize(out)
    _strip(out)  # dicognito may add nothing back, but its method text goes after this
    _complete_file_meta(out)
    out.PatientIdentityRemoved = "YES"
    out.LongitudinalTemporalInformationModified = "MODIFIED"
    out.DeidentificationMethod = ["PS3.15 E.1 Basic Profile", "Retain Longitudinal Modified Dates",
                                  "Clean Descriptors", "qoima with dicognito"]
    codes = []
    for value, meaning in DEIDENTIFICATION_CODES:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(codes)
    if is_burned_in:
        out.BurnedInAnnotation = "YES"
    return DeidentifiedInstance(out, is_burned_in)
