"""The training sources and label semantics, read from training/sources.json.

Adding a data set or a finding is an edit of that JSON file, not of code. A label maps to the
findings it is positive for; the negative label ("normal") is negative for every output; a
finding a label does not name is unknown for that image and masked out of the loss.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

SOURCES_JSON = Path(__file__).with_name("sources.json")
SPLIT_CSV = Path(__file__).with_name("split.csv")
ABNORMAL = "abnormal"


@dataclass(frozen=True)
class Record:
    source: str
    file: str
    label: str
    group: str
    split: str
    population: str


@dataclass(frozen=True)
class SourceConfig:
    outputs: list[str]
    negative_label: str
    split_seed: int
    split_fractions: dict[str, float]
    sources: dict[str, dict[str, object]]

    @property
    def findings(self) -> list[str]:
        return [name for name in self.outputs if name != ABNORMAL]


def load_config(path: Path = SOURCES_JSON) -> SourceConfig:
    data = json.loads(path.read_text())
    return SourceConfig(
        outputs=list(data["outputs"]),
        negative_label=data["negative_label"],
        split_seed=int(data["split_seed"]),
        split_fractions=dict(data["split_fractions"]),
        sources=dict(data["sources"]),
    )


def read_split(path: Path = SPLIT_CSV) -> list[Record]:
    with path.open(newline="") as handle:
        return [Record(**row) for row in csv.DictReader(handle)]


def label_targets(
    records: list[Record], config: SourceConfig
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Targets (N, K) and a mask (N, K) that is 0 where a finding is unknown for an image."""
    targets = np.zeros((len(records), len(config.outputs)), dtype=np.float32)
    mask = np.ones_like(targets)
    for row, record in enumerate(records):
        if record.label == config.negative_label:
            continue
        labels = config.sources[record.source]["labels"]
        assert isinstance(labels, dict)
        positives = set(labels[record.label])
        for column, output in enumerate(config.outputs):
            if output == ABNORMAL or output in positives:
                targets[row, column] = 1.0
            else:
                mask[row, column] = 0.0
    return targets, mask
