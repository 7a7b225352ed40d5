"""Load the split's images as preprocessed uint8 arrays, from the data folders or from a pack.

A pack (training/cache/, git-ignored) holds the train and val images as WebP bytes, small
enough to carry to a GPU machine; both paths end in qoima.ai.preprocess.resized_uint8, the
same code the product runs.
"""

from __future__ import annotations

import csv
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from qoima.ai.preprocess import Preprocessing, pixels_from_image_file, resized_uint8
from training.sources import Record

PACK_BIN = "images.bin"
PACK_CSV = "images.csv"


def _load_file(task: tuple[str, Preprocessing]) -> npt.NDArray[np.uint8]:
    path, preprocessing = task
    return resized_uint8(pixels_from_image_file(Path(path)), preprocessing)


def _load_bytes(task: tuple[bytes, Preprocessing]) -> npt.NDArray[np.uint8]:
    payload, preprocessing = task
    with Image.open(io.BytesIO(payload)) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    return resized_uint8(pixels, preprocessing)


def _workers() -> int:
    return max(1, min(16, os.cpu_count() or 1))


def load_from_data(
    records: list[Record], data_dir: Path, preprocessing: Preprocessing
) -> npt.NDArray[np.uint8]:
    tasks = [(str(data_dir / r.source / r.file), preprocessing) for r in records]
    with ProcessPoolExecutor(_workers()) as pool:
        return np.stack(list(pool.map(_load_file, tasks, chunksize=64)))


def write_pack(records: list[Record], data_dir: Path, pack_dir: Path, quality: int) -> None:
    """Re-encode the records' images (native size, greyscale) as WebP into one file."""
    pack_dir.mkdir(parents=True, exist_ok=True)
    offsets = []
    with (pack_dir / PACK_BIN).open("wb") as blob:
        for record in records:
            with Image.open(data_dir / record.source / record.file) as image:
                buffer = io.BytesIO()
                image.convert("L").save(buffer, "WEBP", quality=quality, method=6)
            start = blob.tell()
            blob.write(buffer.getvalue())
            offsets.append((start, blob.tell() - start))
    with (pack_dir / PACK_CSV).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*asdict(records[0]), "offset", "length"])
        writer.writeheader()
        for record, (start, length) in zip(records, offsets, strict=True):
            writer.writerow({**asdict(record), "offset": start, "length": length})


def load_pack(
    pack_dir: Path, preprocessing: Preprocessing
) -> tuple[list[Record], npt.NDArray[np.uint8]]:
    with (pack_dir / PACK_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    blob = (pack_dir / PACK_BIN).read_bytes()
    records = [
        Record(**{k: v for k, v in row.items() if k not in ("offset", "length")}) for row in rows
    ]
    tasks = [
        (blob[int(row["offset"]) : int(row["offset"]) + int(row["length"])], preprocessing)
        for row in rows
    ]
    with ProcessPoolExecutor(_workers()) as pool:
        images = np.stack(list(pool.map(_load_bytes, tasks, chunksize=64)))
    return records, images
