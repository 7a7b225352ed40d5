"""Chest radiograph preprocessing: DICOM or PNG/JPEG to model input, and applicability checks.

numpy, pillow and pydicom only: the training code imports this module so that training and the
product normalise images in exactly the same way. Must not import torch.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from qoima.errors import InvalidDicom

logger = logging.getLogger(__name__)

FloatImage = npt.NDArray[np.float32]

# The modalities of the CR and DX IODs (PS3.3 A.2, A.26), plus the retired "DR".
PROJECTION_MODALITIES = frozenset({"CR", "DX", "DR"})
# PS3.16 CID 4031 code meanings as they appear in BodyPartExamined (CS, upper case).
CHEST_BODY_PARTS = frozenset({"CHEST", "THORAX"})
LATERAL_VIEW_POSITIONS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "XCC"})
FRONTAL_VIEW_POSITIONS = frozenset({"PA", "AP", ""})
LATERAL_DESCRIPTION_WORDS = frozenset({"LAT", "LATERAL", "LATERALE", "LL", "RL", "SIDE"})
DESCRIPTION_KEYWORDS = (
    "SeriesDescription",
    "ProtocolName",
    "AcquisitionDeviceProcessingDescription",
)
VETERINARY_WORDS = frozenset({"CANINE", "FELINE", "EQUINE", "BOVINE", "VET", "VETERINARY"})
HUMAN_SPECIES = ("HUMAN", "HOMO SAPIENS")
PERCENTILE_LOW = 0.5
PERCENTILE_HIGH = 99.5
PERCENTILE_SAMPLE_PX = 512


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input; stored as-is in each model's model.json."""

    resize_px: int = 256
    crop_px: int = 224
    equalize: bool = True
    mean: float = 0.5
    std: float = 0.25

    def to_json(self) -> dict[str, Any]:
        return {
            "resize_px": self.resize_px,
            "crop_px": self.crop_px,
            "equalize": self.equalize,
            "mean": self.mean,
            "std": self.std,
            "steps": [
                "modality LUT (rescale), VOI LUT or window, MONOCHROME1 inverted",
                f"clip to the {PERCENTILE_LOW}-{PERCENTILE_HIGH} percentiles, scale to 0..1",
                f"resize (squash) to {self.resize_px}x{self.resize_px}, bilinear",
                "global histogram equalisation (256 bins)" if self.equalize else "no equalisation",
                f"central crop {self.crop_px}x{self.crop_px} (lung field)",
                f"(x - {self.mean}) / {self.std}",
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(
            resize_px=int(data["resize_px"]),
            crop_px=int(data["crop_px"]),
            equalize=bool(data["equalize"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
        )


def check_applicable(ds: Dataset) -> str | None:
    """Return why a chest-radiograph model must skip this instance, or None if it applies."""
    modality = str(ds.get("Modality", "")).upper()
    if modality not in PROJECTION_MODALITIES:
        return f"modality {modality or '(empty)'} is not a projection radiograph (CR/DX/DR)"
    body_part = str(ds.get("BodyPartExamined", "")).strip().upper()
    if body_part and body_part not in CHEST_BODY_PARTS:
        return f"body part {body_part} is not chest"
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return "instance has no pixel data"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        return f"multi-frame image ({frames} frames) is not a single radiograph"
    view = str(ds.get("ViewPosition", "")).strip().upper()
    if view in LATERAL_VIEW_POSITIONS:
        return f"view position {view} is lateral; the model reads frontal (PA/AP) views only"
    if view not in FRONTAL_VIEW_POSITIONS:
        return f"view position {view} is not frontal (PA/AP)"
    # Per-image descriptions only: a StudyDescription such as "Chest PA and LAT" names both.
    descriptions = " ".join(
        str(ds.get(keyword, "") or "") for keyword in DESCRIPTION_KEYWORDS
    ).upper()
    words = set(re.split(r"[^A-Z]+", descriptions))
    if words & LATERAL_DESCRIPTION_WORDS:
        return f"image description suggests a lateral view: {descriptions.strip()!r}"
    species = str(ds.get("PatientSpeciesDescription", "") or "").strip().upper()
    if (species and not species.startswith(HUMAN_SPECIES)) or words & VETERINARY_WORDS:
        return "veterinary image; the model reads human chest radiographs only"
    laterality = str(ds.get("ImageLaterality", "") or "").strip().upper()
    if not view and laterality in ("L", "R"):
        # Image Laterality (0020,0062) is R, L, U or B; a frontal chest covers both sides ("B" or
        # absent), so "L" or "R" with no view position marks a lateral or one-sided image.
        return f"image laterality {laterality} without a view position suggests a lateral view"
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1:
        return f"{samples} samples per pixel; a greyscale radiograph has 1"
    return None


def pixels_from_dataset(ds: Dataset) -> FloatImage:
    """Decode a greyscale radiograph as float32, bright = dense, with rescale and VOI applied."""
    try:
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for codec and layout problems
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise InvalidDicom(f"cannot decode pixel data ({name}): {exc}") from exc
    if raw.ndim != 2:
        raise InvalidDicom(f"expected one greyscale frame, got pixel array shape {raw.shape}")
    pixels = apply_modality_lut(raw, ds)
    if "VOILUTSequence" in ds or "WindowCenter" in ds:
        pixels = apply_voi_lut(pixels, ds, index=0, prefer_lut=True)
    pixels = np.asarray(pixels, dtype=np.float32)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        # PS3.3 C.7.6.3.1.2: in MONOCHROME1 the minimum value is displayed white.
        pixels = pixels.max() - pixels + pixels.min()
    return pixels


def pixels_from_image_file(path: Path) -> FloatImage:
    """Read a PNG/JPEG radiograph as float32 greyscale (RGB images are converted to luma)."""
    with Image.open(path) as image:
        if image.mode in ("I", "I;16", "I;16B", "F"):
            return np.asarray(image, dtype=np.float32)
        return np.asarray(image.convert("L"), dtype=np.float32)


def to_unit_range(pixels: FloatImage) -> FloatImage:
    """Clip to robust percentiles and scale to 0..1."""
    # Percentiles of a full-size radiograph from a regular subsample of about 512 x 512 pixels:
    # the same values to within a grey level, at a fraction of the sort's cost.
    step = max(1, -(-max(pixels.shape) // PERCENTILE_SAMPLE_PX))
    low, high = np.percentile(pixels[::step, ::step], [PERCENTILE_LOW, PERCENTILE_HIGH])
    if not high > low:
        return np.zeros_like(pixels, dtype=np.float32)
    scaled: FloatImage = np.clip((pixels - low) / (high - low), 0.0, 1.0).astype(np.float32)
    return scaled


def equalize_histogram(unit: FloatImage, bins: int = 256) -> FloatImage:
    """Global histogram equalisation of a 0..1 image, returning 0..1."""
    levels = np.minimum((unit * bins).astype(np.int64), bins - 1)
    counts = np.bincount(levels.ravel(), minlength=bins)
    cdf = np.cumsum(counts).astype(np.float64)
    cdf_min = cdf[counts > 0][0]
    span = cdf[-1] - cdf_min
    if span <= 0:
        return np.zeros_like(unit, dtype=np.float32)
    lookup = ((cdf - cdf_min) / span).astype(np.float32)
    equalised: FloatImage = lookup[levels]
    return equalised


def resized_uint8(pixels: FloatImage, preprocessing: Preprocessing) -> npt.NDArray[np.uint8]:
    """The deterministic part of preprocessing: unit range, square resize, equalisation, as uint8.

    Training caches this image and applies its augmentation (crop, rotation, contrast, noise)
    on top of it; inference crops the centre.
    """
    unit = to_unit_range(pixels)
    image = Image.fromarray(unit, mode="F").resize(
        (preprocessing.resize_px, preprocessing.resize_px), Image.Resampling.BILINEAR
    )
    resized = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if preprocessing.equalize:
        resized = equalize_histogram(resized)
    return np.round(resized * 255.0).astype(np.uint8)


def center_crop(image: npt.NDArray[Any], crop_px: int) -> npt.NDArray[Any]:
    """The central crop_px x crop_px region of a square image."""
    height, width = image.shape[-2:]
    top = (height - crop_px) // 2
    left = (width - crop_px) // 2
    return image[..., top : top + crop_px, left : left + crop_px]


def standardize(image_uint8: npt.NDArray[np.uint8], preprocessing: Preprocessing) -> FloatImage:
    """uint8 0..255 to the float scale the network was trained on."""
    unit = image_uint8.astype(np.float32) / 255.0
    return ((unit - preprocessing.mean) / preprocessing.std).astype(np.float32)


def model_input(pixels: FloatImage, preprocessing: Preprocessing) -> FloatImage:
    """Full inference preprocessing of one image: returns float32 (1, crop_px, crop_px)."""
    cropped = center_crop(resized_uint8(pixels, preprocessing), preprocessing.crop_px)
    return standardize(cropped, preprocessing)[np.newaxis]


def model_input_from_file(path: Path, preprocessing: Preprocessing) -> FloatImage:
    """Model input from a DICOM, PNG or JPEG file (DICOM recognised by content, not by name)."""
    if is_dicom_file(path):
        from pydicom import dcmread

        return model_input(pixels_from_dataset(dcmread(path)), preprocessing)
    return model_input(pixels_from_image_file(path), preprocessing)


def is_dicom_file(path: Path) -> bool:
    """True if the file has the DICM preamble of PS3.10 7.1."""
    with path.open("rb") as handle:
        header = handle.read(132)
    return len(header) == 132 and header[128:132] == b"DICM"
