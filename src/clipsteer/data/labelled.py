"""Labelled datasets: image files with per-image labels, and the `PREFIX:ROOT` specs that open them.

`LabelledFiles` is the one concrete class every on-disk reader returns: a root folder, relative file
paths in a fixed order, integer label columns and their value names. Readers (`waterbirds.py`,
`celeba.py`, `typographic_sets.py`, `labels_csv.py`) only parse their format into it.

Specs (`open_labelled(spec, split)`): `waterbirds:ROOT`, `celeba:ROOT`, `rta100:ROOT`, `paint:ROOT`,
`disentangling:ROOT`, `csv:ROOT` (a folder with `labels.csv`), and any source an installed package
registers in the entry-point group `clipsteer.labelled_datasets` — the synthetic world registers
`world:TASK[:N]` that way, so nothing generic imports it.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Sequence
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


def check_split(split: str, splits: Sequence[str], fmt: str) -> str:
    if split not in splits:
        raise ValueError(f"{fmt}: unknown split {split!r}; choose from {list(splits)}")
    return split


def index_of(values: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Distinct names (sorted) and each value's index among them."""
    names = tuple(sorted(set(values)))
    lookup = {n: k for k, n in enumerate(names)}
    return names, np.array([lookup[v] for v in values], dtype=np.int64)


Opener = Callable[[str, str], NamedLabelledDataset]  # (root or spec body, split) -> dataset

# Built-in sources, imported lazily by "module:function" so that opening one format never imports another.
_SOURCES: dict[str, str | Opener] = {
    "waterbirds": "clipsteer.data.waterbirds:open_waterbirds",
    "celeba": "clipsteer.data.celeba:open_celeba",
    "rta100": "clipsteer.data.typographic_sets:open_rta100",
    "paint": "clipsteer.data.typographic_sets:open_paint",
    "disentangling": "clipsteer.data.typographic_sets:open_disentangling",
    "csv": "clipsteer.data.labels_csv:open_labels_csv",
}
ENTRY_POINT_GROUP = "clipsteer.labelled_datasets"


def register_labelled_source(prefix: str, opener: Opener) -> None:
    """Make `open_labelled('PREFIX:...')` call `opener(body, split)`."""
    _SOURCES[prefix] = opener


def open_labelled(spec: str, split: str) -> NamedLabelledDataset:
    """Open a labelled dataset from `PREFIX:BODY` (see module docstring) at one split."""
    from importlib.metadata import entry_points

    prefix, sep, body = str(spec).partition(":")
    sources = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)} | _SOURCES
    if not sep or prefix not in sources:
        raise ValueError(f"labelled dataset {spec!r}: expected PREFIX:ROOT with PREFIX one of {sorted(sources)}")
    opener = sources[prefix]
    if isinstance(opener, str):
        module, name = opener.split(":")
        opener = getattr(importlib.import_module(module), name)
    return opener(body, split)
