"""Waterbirds (Sagawa et al. 2020, `waterbird_complete95_forest2water2`): `metadata.csv` with columns
`img_filename, y, place, split` (split 0 train, 1 val, 2 test; y 1 = waterbird; place 1 = water)."""

from __future__ import annotations

import csv

import numpy as np

from clipsteer.data.labelled import DatasetFormatError, LabelledFiles, check_root, check_split
from clipsteer.data.protocol import LABEL, SPURIOUS

SPLITS = {"train": 0, "val": 1, "test": 2}
COLUMNS = ("img_filename", "y", "place", "split")
CLASS_NAMES = ("landbird", "waterbird")
PLACE_NAMES = ("land", "water")


def open_waterbirds(root: str, split: str) -> LabelledFiles:
    """Images of one split with labels `label` (landbird/waterbird) and `spurious` (land/water background)."""
    folder = check_root(root, ["metadata.csv"], "Waterbirds")
    check_split(split, list(SPLITS), "Waterbirds")
    path = folder / "metadata.csv"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetFormatError(f"{path}: missing columns {missing}; expected {list(COLUMNS)}")
        rows = [r for r in reader if _int(r, "split", path) == SPLITS[split]]
    files = [r["img_filename"] for r in rows]
    y = np.array([_binary(r, "y", path) for r in rows], dtype=np.int64)
    place = np.array([_binary(r, "place", path) for r in rows], dtype=np.int64)
    return LabelledFiles(folder, files, {LABEL: y, SPURIOUS: place},
                         {LABEL: CLASS_NAMES, SPURIOUS: PLACE_NAMES}, f"Waterbirds[{split}]")


def _int(row: dict, column: str, path) -> int:
    try:
        return int(row[column])
    except (TypeError, ValueError):
        raise DatasetFormatError(f"{path}: column {column!r} holds {row[column]!r}, expected an integer") from None


def _binary(row: dict, column: str, path) -> int:
    value = _int(row, column, path)
    if value not in (0, 1):
        raise DatasetFormatError(f"{path}: column {column!r} holds {value}, expected 0 or 1")
    return value
