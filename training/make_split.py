"""Assign every image to train/val/test by near-duplicate group or patient; writes split.csv.

Usage: python -m training.make_split --data ../shared/data
The split is a deterministic hash of (seed, source, group), so images of one group (or one
patient) never straddle two parts, and rerunning gives the same file.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

from training.sources import SPLIT_CSV, load_config


def split_of(seed: int, source: str, group: str, fractions: dict[str, float]) -> str:
    digest = hashlib.sha256(f"{seed}:{source}:{group}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return list(fractions)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=SPLIT_CSV)
    args = parser.parse_args()
    config = load_config()
    rows = []
    for source, spec in config.sources.items():
        with (args.data / source / "labels.csv").open(newline="") as handle:
            for row in csv.DictReader(handle):
                group = row[str(spec["group_column"])]
                rows.append(
                    {
                        "source": source,
                        "file": row["file"],
                        "label": row["label"],
                        "group": group,
                        "split": split_of(config.split_seed, source, group, config.split_fractions),
                        "population": str(spec["population"]),
                    }
                )
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
