"""Pixel data to JPEG/PNG for viewers: modality LUT, VOI window, MONOCHROME1 inversion, resize.

PS3.18 8.3.5 (rendered resources) and 8.3.5.1.3 (window parameter). Pure: arrays in, bytes out.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

MEDIA_TYPE_JPEG = "image/jpeg"
MEDIA_TYPE_PNG = "image/png"
RENDERED_MEDIA_TYPES = (MEDIA_TYPE_JPEG, MEDIA_TYPE_PNG)


@dataclass(frozen=True)
class Window:
    """PS3.18 8.3.5.1.3: center, width and VOI LUT function (LINEAR or SIGMOID)."""

    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = MEDIA_TYPE_JPEG
    window: Window | None = None
    viewport: tuple[int, int] | None = None  # (columns, rows) to fit within, aspect kept
    quality: int = 90


def parse_window(text: str) -> Window:
    """``center,width[,function]`` -> Window; ValueError when malformed."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError("window must be center,width[,function]")
    center, width = float(parts[0]), float(parts[1])
    function = parts[2].upper() if len(parts) == 3 else "LINEAR"
    if width < 1 or not np.isfinite(center) or not np.isfinite(width):
        raise ValueError("window width must be at least 1 and values finite")
    if function not in ("LINEAR", "SIGMOID"):
        raise ValueError("window function must be LINEAR or SIGMOID")
    return Window(center, width, function)


def _window(values: np.ndarray[Any, Any], window: Window) -> np.ndarray[Any, Any]:
    if window.function == "SIGMOID":  # PS3.3 C.11.2.1.3.1
        return 1.0 / (1.0 + np.exp(-4.0 * (values - window.center) / window.width))
    # PS3.3 C.11.2.1.2.1 linear function: below c - 0.5 - (w-1)/2 black, above
    # c - 0.5 + (w-1)/2 white, a straight line between
    low = window.center - 0.5 - (window.width - 1) / 2
    high = window.center - 0.5 + (window.width - 1) / 2
    if window.width <= 1:
        return np.where(values > high, 1.0, 0.0)
    ramp = (values - (window.center - 0.5)) / (window.width - 1) + 0.5
    return np.where(values <= low, 0.0, np.where(values > high, 1.0, np.clip(ramp, 0.0, 1.0)))


def _to_unit(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return (values - low) / (high - low)


def _grey_levels(pixels: np.ndarray[Any, Any], ds: Dataset, frame_index: int,
                 window: Window | None) -> np.ndarray[Any, Any]:
    values = apply_modality_lut(pixels, ds).astype(np.float64)
    if window is not None:
        unit = _window(values, window)
    elif "VOILUTSequence" in ds or "WindowCenter" in ds:
        unit = _to_unit(apply_voi_lut(values, ds, index=frame_index))
    else:
        unit = _to_unit(values)
    levels = np.asarray(np.round(unit * 255.0), dtype=np.uint8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        return np.asarray(255 - levels, dtype=np.uint8)  # PS3.3 C.7.6.3.1.2: min is white
    return levels


def to_image(pixels: np.ndarray[Any, Any], ds: Dataset, frame_index: int = 0,
             window: Window | None = None) -> Image.Image:
    """One decoded frame (rows x columns [x samples]) as an 8-bit PIL image."""
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric == "PALETTE COLOR":
        pixels = apply_color_lut(pixels, ds)
    if pixels.ndim == 3:  # colour; pydicom has already converted YBR to RGB
        if pixels.dtype != np.uint8:
            pixels = np.asarray(np.round(_to_unit(pixels.astype(np.float64)) * 255),
                                dtype=np.uint8)
        return Image.fromarray(pixels[..., :3], mode="RGB")
    return Image.fromarray(_grey_levels(pixels, ds, frame_index, window), mode="L")


def encode_image(image: Image.Image, options: RenderOptions) -> bytes:
    """Resize to the viewport (aspect kept) and encode as JPEG or PNG."""
    if options.viewport is not None:
        image = image.copy()
        image.thumbnail(options.viewport, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if options.media_type == MEDIA_TYPE_PNG:
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=options.quality)
    return buffer.getvalue()


def render_frame(pixels: np.ndarray[Any, Any], ds: Dataset, frame_index: int,
                 options: RenderOptions) -> bytes:
    """A decoded frame as JPEG or PNG bytes, windowed for display."""
    return encode_image(to_image(pixels, ds, frame_index, options.window), options)
