"""Pixels for the browser viewer: decoded frames as float32 for client-side windowing, and PNGs.

Uses pydicom's decoders (pylibjpeg) on the stored bytes; nothing is written back.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.pixels.processing import apply_modality_lut

MAX_VIEWER_SIZE = 1024


@dataclass(frozen=True)
class Frame:
    values: NDArray[np.float32]  # rows x columns (grey) or rows x columns x 3 (colour)
    window_center: float
    window_width: float
    is_inverted: bool  # MONOCHROME1: high values are dark
    pixel_spacing_mm: float | None  # after downsampling


def _first(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return float(value[0]) if len(value) else None
    return float(value)  # type: ignore[arg-type]


def decode_frame(data: bytes, max_size: int = MAX_VIEWER_SIZE) -> Frame:
    """The first frame with the modality LUT applied, downsampled to at most ``max_size``."""
    ds = pydicom.dcmread(io.BytesIO(data))
    array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        array = array[0]
    is_colour = int(ds.get("SamplesPerPixel", 1)) > 1
    values = array.astype(np.float32) if is_colour else apply_modality_lut(array, ds).astype(
        np.float32)
    step = max(1, -(-max(values.shape[0], values.shape[1]) // max_size))
    values = np.ascontiguousarray(values[::step, ::step])
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        low, high = np.percentile(values, [0.5, 99.5]) if values.size else (0.0, 1.0)
        center, width = float(low + high) / 2, max(float(high - low), 1.0)
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    spacing_mm = float(spacing[0]) * step if spacing else None
    return Frame(values, center, width,
                 str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1", spacing_mm)


def render_png(data: bytes, max_size: int, heatmap: bool = False) -> bytes:
    """A windowed 8-bit PNG; ``heatmap`` maps grey values to a red-yellow overlay with alpha."""
    from PIL import Image

    frame = decode_frame(data, max_size)
    values = frame.values
    if values.ndim == 3:
        image = Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "RGB")
    else:
        low = frame.window_center - frame.window_width / 2
        scaled = np.clip((values - low) / frame.window_width, 0.0, 1.0)
        if frame.is_inverted:
            scaled = 1.0 - scaled
        if heatmap:
            rgba = np.zeros((*scaled.shape, 4), dtype=np.uint8)
            rgba[..., 0] = 255
            rgba[..., 1] = (np.clip(scaled * 2 - 1, 0, 1) * 255).astype(np.uint8)
            rgba[..., 3] = (np.clip(scaled * 1.4, 0, 1) * 200).astype(np.uint8)
            image = Image.fromarray(rgba, "RGBA")
        else:
            image = Image.fromarray((scaled * 255).astype(np.uint8), "L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
