"""A generic labelled image folder: `ROOT/labels.csv` with a `file` column (paths relative to ROOT) and
any label columns holding names (e.g. `label`, `spurious`, `text`); an optional `split` column.

Value names are the sorted distinct strings of each column (an empty cell is unknown, −1). Without a
`split` column every image is in every split."""

from __future__ import annotations

import csv

import numpy as np

from clipsteer.data.labelled import DatasetFormatError, LabelledFiles, check_root

CSV_NAME = "labels.csv"


def open_labels_csv(root: str, split: str) -> LabelledFiles:
    folder = check_root(root, [CSV_NAME], "labelled image folder")
    path = folder / CSV_NAME
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    if "file" not in fields:
        raise DatasetFormatError(f"{path}: missing column 'file'; expected 'file' plus label columns")
    label_columns = [c for c in fields if c not in ("file", "split")]
    if not label_columns:
        raise DatasetFormatError(f"{path}: no label columns besides 'file'/'split'")
    if "split" in fields:
        splits = sorted({r["split"] for r in rows})
        if split not in splits:
            raise ValueError(f"{path}: unknown split {split!r}; the 'split' column holds {splits}")
        rows = [r for r in rows if r["split"] == split]
    columns, names = {}, {}
    for column in label_columns:
        values = [(r[column] or "").strip() for r in rows]
        names[column] = tuple(sorted({v for v in values if v}))
        index = {v: k for k, v in enumerate(names[column])}
        columns[column] = np.array([index.get(v, -1) for v in values], dtype=np.int64)
    return LabelledFiles(folder, [r["file"] for r in rows], columns, names, f"labels.csv[{split}]")
