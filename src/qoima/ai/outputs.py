"""AI results as DICOM, built with highdicom: a TID 1500 Comprehensive SR and a heatmap overlay.

UIDs are derived from the job (study, pipeline, model version) and the images it read, so a
retried job makes the same instances and the worker can tell that an output already exists.
Nothing here stores anything.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from qoima.ai.pipelines.chest_triage import ChestTriageResult, FindingScore, RadiographResult

MANUFACTURER = "Qoima"
SR_SERIES_NUMBER = 9901
HEATMAP_SERIES_NUMBER = 9902
# SNOMED CT codes for the model's output names; a model may add its own in model.json
# ("finding_codes": {"name": ["value", "scheme", "meaning"]}); unknown names get a local code.
FINDING_CODES: dict[str, Code] = {
    "abnormal": Code("263654008", "SCT", "Abnormal"),
    "tuberculosis": Code("56717001", "SCT", "Tuberculosis"),
    "pneumonia": Code("233604007", "SCT", "Pneumonia"),
    "opacity": codes.DCM.Opacity,
}
PROCEDURE_CHEST_RADIOGRAPH = Code("399208008", "SCT", "Plain chest X-ray")
CODE_PROBABILITY = codes.DCM.Probability  # DCM 122157
CODE_FINDING = codes.DCM.Finding  # DCM 121071
CODE_PRESENT = codes.SCT.Present
CODE_ABSENT = codes.SCT.Absent
LOCAL_SCHEME = "99QOIMA"
TAG_FIRST_PIXEL_GROUP = 0x7FE00000  # (7FE0,xxxx): Pixel Data and its float variants


@dataclass(frozen=True)
class OutputUids:
    """Deterministic UIDs of one job's outputs."""

    sr_series: str
    sr_instance: str
    heatmap_series: str

    @classmethod
    def for_job(cls, study_instance_uid: str, pipeline: str, model_version: str,
                input_sop_instance_uids: Sequence[str] = ()) -> OutputUids:
        """Same job and same inputs, same UIDs; a study that gained an image gets new ones."""
        seed = [study_instance_uid, pipeline, model_version, *sorted(input_sop_instance_uids)]
        return cls(sr_series=generate_uid(entropy_srcs=[*seed, "sr-series"]),
                   sr_instance=generate_uid(entropy_srcs=[*seed, "sr"]),
                   heatmap_series=generate_uid(entropy_srcs=[*seed, "heatmap-series"]))

    def heatmap_instance(self, source_sop_instance_uid: str) -> str:
        return generate_uid(entropy_srcs=[self.heatmap_series, source_sop_instance_uid])


@contextmanager
def _lenient_copied_names() -> Iterator[None]:
    # Patient and study attributes are copied from the source as received; highdicom warns about
    # odd person names there (a single component such as "ward"), which we accept on input.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*person name.*", category=UserWarning)
        yield


def without_pixel_data(ds: Dataset) -> Dataset:
    """The header only: highdicom deep-copies evidence, and the pixels are not needed for it."""
    header = Dataset({elem.tag: elem for elem in ds if elem.tag < TAG_FIRST_PIXEL_GROUP})
    if hasattr(ds, "file_meta"):
        header.file_meta = ds.file_meta
    return header


def finding_code(name: str, extra_codes: dict[str, list[str]] | None = None) -> Code:
    if extra_codes and name in extra_codes:
        value, scheme, meaning = extra_codes[name]
        return Code(value, scheme, meaning)
    return FINDING_CODES.get(name) or Code(name.upper()[:16], LOCAL_SCHEME, name)


def _group(score: FindingScore, index: int, source: Dataset,
           algorithm: hd.sr.AlgorithmIdentification,
           extra_codes: dict[str, list[str]] | None
           ) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    code = finding_code(score.name, extra_codes)
    probability = hd.sr.Measurement(name=CODE_PROBABILITY, value=round(score.probability, 6),
                                    unit=codes.UCUM.NoUnits, algorithm_id=algorithm)
    evaluations = []
    if score.threshold is not None:
        evaluations.append(hd.sr.QualitativeEvaluation(
            name=code, value=CODE_PRESENT if score.is_positive else CODE_ABSENT))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            identifier=f"{score.name} image {index + 1}",
            uid=generate_uid(entropy_srcs=[source.SOPInstanceUID, score.name])),
        finding_type=code,
        algorithm_id=algorithm,
        measurements=[probability],
        qualitative_evaluations=evaluations or None,
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )


def build_measurement_report(result: ChestTriageResult, uids: OutputUids,
                             extra_codes: dict[str, list[str]] | None = None
                             ) -> hd.sr.ComprehensiveSR:
    """TID 1500 Measurement Report: per image and output, the probability and the call."""
    if not result.results:
        raise ValueError("a measurement report needs at least one scored image")
    algorithm = hd.sr.AlgorithmIdentification(name=result.model_name,
                                              version=result.model_version)
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[result.model_name, result.model_version]),
            name=result.model_name, manufacturer_name=MANUFACTURER,
            model_name=f"{result.model_name} {result.model_version}"))
    groups = []
    for index, image in enumerate(result.results):
        source = image.radiograph.dataset
        for score in (image.abnormality, *image.findings):
            groups.append(_group(score, index, source, algorithm, extra_codes))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=PROCEDURE_CHEST_RADIOGRAPH,
        imaging_measurements=groups,
    )
    evidence = [without_pixel_data(image.radiograph.dataset) for image in result.results]
    with _lenient_copied_names():
        return hd.sr.ComprehensiveSR(
            evidence=evidence, content=report, series_instance_uid=uids.sr_series,
            series_number=SR_SERIES_NUMBER, sop_instance_uid=uids.sr_instance,
            instance_number=1, manufacturer=MANUFACTURER, is_complete=True, is_final=False,
            is_verified=False,
            series_description=f"AI {result.model_name} {result.model_version}"[:64],
        )


def overlay_pixels(image: RadiographResult, resize_px: int,
                   crop_px: int) -> npt.NDArray[np.uint8]:
    """RGB: the radiograph in grey, the abnormality heatmap blended in red to yellow."""
    from PIL import Image

    display = image.display.astype(np.float32) / 255.0
    rows, columns = display.shape
    # The model saw the central crop of the image squashed to resize_px square.
    full = np.zeros((resize_px, resize_px), dtype=np.float32)
    offset = (resize_px - crop_px) // 2
    full[offset:offset + crop_px, offset:offset + crop_px] = image.heatmap
    heat = np.asarray(Image.fromarray(full).resize((columns, rows), Image.Resampling.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)
    alpha = np.where(heat > 0.2, 0.45 * heat, 0.0)[..., np.newaxis]
    colour = np.stack([np.ones_like(heat), heat, np.zeros_like(heat)], axis=-1)
    rgb = display[..., np.newaxis] * (1.0 - alpha) + colour * alpha
    pixels: npt.NDArray[np.uint8] = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return pixels


def build_heatmap_overlay(image: RadiographResult, uids: OutputUids, model_name: str,
                          model_version: str, resize_px: int, crop_px: int,
                          instance_number: int = 1) -> hd.sc.SCImage:
    """Secondary Capture (new series) of the radiograph with the heatmap overlaid."""
    source = image.radiograph.dataset
    with _lenient_copied_names():
        sc = _secondary_capture(image, source, uids, resize_px, crop_px, instance_number)
    sc.SeriesDescription = f"AI heatmap {model_name} {model_version}"[:64]
    sc.ImageComments = ("Not for diagnosis: where the triage model's abnormality score came "
                        "from (class activation map)")
    sc.BurnedInAnnotation = "NO"
    return sc


def _secondary_capture(image: RadiographResult, source: Dataset, uids: OutputUids,
                       resize_px: int, crop_px: int, instance_number: int) -> hd.sc.SCImage:
    orientation = source.get("PatientOrientation")
    return hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=overlay_pixels(image, resize_px, crop_px),
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=uids.heatmap_series,
        series_number=HEATMAP_SERIES_NUMBER,
        sop_instance_uid=uids.heatmap_instance(image.radiograph.sop_instance_uid),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=tuple(orientation) if orientation and len(orientation) == 2
        else ("L", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
