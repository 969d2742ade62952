"""Labelled datasets: image files with per-image labels, and the `PREFIX:ROOT` specs that open them.

`LabelledFiles` is the one concrete class every on-disk reader returns: a root folder, relative file
paths in a fixed order, integer label columns and their value names. Readers (`waterbirds.py`,
`celeba.py`, `typographic_sets.py`, `labels_csv.py`) only parse their format into it.

Specs (`open_labelled(spec, split)`, i.e. `clipsteer.data.open_dataset(spec, split)` checked for
labels): `waterbirds:ROOT`, `celeba:ROOT`, `rta100:ROOT`, `paint:ROOT`, `disentangling:ROOT`, `csv:ROOT`
(a folder with `labels.csv`), and any source registered with `clipsteer.data.resolve` — the synthetic
world's `world:TASK[:N]` is one, so nothing generic imports it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from clipsteer.data.folder import read_rgb
from clipsteer.data.protocol import LABEL, NamedLabelledDataset, check_index


class DatasetFormatError(ValueError):
    """A dataset folder that does not match its documented format; the message names the file and field."""


class LabelledFiles:
    """Images `root / files[i]` with labels `columns[name][i]` (int64, value v named `names[name][v]`)."""

    def __init__(self, root: Path, files: Sequence[str], columns: dict[str, np.ndarray],
                 names: dict[str, tuple[str, ...]], description: str):
        self.root, self.files, self.description = Path(root), list(files), description
        if not self.files:
            raise DatasetFormatError(f"{description}: no images selected")
        for name, values in columns.items():
            if values.shape != (len(self.files),):
                raise DatasetFormatError(f"{description}: label {name!r} has shape {values.shape}, "
                                         f"expected [{len(self.files)}]")
            if values.size and (values.max() >= len(names[name]) or values.min() < -1):
                raise DatasetFormatError(f"{description}: label {name!r} has values outside 0..{len(names[name]) - 1}")
        self.columns = {k: v.astype(np.int64) for k, v in columns.items()}
        self.names = dict(names)

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return f"{self.description}(n={len(self)})"

    def path(self, i: int) -> Path:
        return self.root / self.files[check_index(i, len(self), repr(self))]

    def name(self, i: int) -> str:
        return self.files[check_index(i, len(self), repr(self))]

    def load(self, i: int) -> Image.Image:
        return read_rgb(self.path(i))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_names()[LABEL]

    def labels(self) -> dict[str, np.ndarray]:
        return dict(self.columns)

    def label_names(self) -> dict[str, tuple[str, ...]]:
        return dict(self.names)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"LabelledFiles/v1\n{self.description}\n".encode())
        for i, rel in enumerate(self.files):
            row = ",".join(str(int(self.columns[k][i])) for k in sorted(self.columns))
            digest.update(f"{rel}\t{row}\n".encode())
        return digest.hexdigest()[:16]


def check_root(root: str | Path, required: Sequence[str], fmt: str) -> Path:
    """The dataset root as a Path; a clear error when it or one of its required entries is missing."""
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{fmt} root not found: {path} (expected a folder holding {list(required)})")
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise FileNotFoundError(f"{fmt} root {path} lacks {missing}; expected {list(required)} "
                                f"(is this the right folder?)")
    return path


def check_split(split: str | None, splits: Sequence[str], fmt: str) -> str:
    if split is None:
        raise ValueError(f"{fmt}: name a split; choose from {list(splits)}")
    if split not in splits:
        raise ValueError(f"{fmt}: unknown split {split!r}; choose from {list(splits)}")
    return split


def index_of(values: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct names (sorted) and each value's index among them."""
    names = tuple(sorted(set(values)))
    lookup = {n: k for k, n in enumerate(names)}
    return names, np.array([lookup[v] for v in values], dtype=np.int64)


def open_labelled(spec: str, split: str, *, model_dir: Path | None = None) -> NamedLabelledDataset:
    """`open_dataset(spec, split, model_dir=model_dir)`, checked to be a labelled dataset with named label values."""
    from clipsteer.data.resolve import open_dataset

    dataset = open_dataset(spec, split, model_dir=model_dir)
    if not isinstance(dataset, NamedLabelledDataset):
        raise ValueError(f"dataset {spec!r} has no named labels ({type(dataset).__name__}); expected a labelled "
                         "dataset such as waterbirds:ROOT, celeba:ROOT, csv:ROOT or world:background")
    return dataset
