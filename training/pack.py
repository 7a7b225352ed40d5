"""Pack the train and val images into training/cache/ (WebP) to carry to a GPU machine.

Usage: python -m training.pack --data ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.images import write_pack
from training.sources import read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("training/cache/pack"))
    parser.add_argument("--quality", type=int, default=82)
    args = parser.parse_args()
    records = [r for r in read_split() if r.split in ("train", "val")]
    write_pack(records, args.data, args.out, args.quality)


if __name__ == "__main__":
    main()
