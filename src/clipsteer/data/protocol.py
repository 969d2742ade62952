"""The one interface every image dataset implements, and the error for images that cannot be read.

A dataset is an indexable collection of images with a stable identity:
- `len(ds)` images, addressed by index `0 <= i < len(ds)` (the index is what activation stores record),
- `ds.load(i)` decodes image `i` as an RGB `PIL.Image.Image`, or raises `ImageReadError` naming the file,
- `ds.fingerprint()` is a short string that changes whenever the dataset's contents or order could
  change; harvests compare it before resuming so that a store never mixes two datasets,
- `ds.name(i)` (optional) is a human-readable name, e.g. the file's relative path.

A `NamedLabelledDataset` adds named values for every label column (`label_names()`) and, optionally, a
pixel mask of where text is written (`text_mask(i)`). Experiments read these columns by convention:
`LABEL` (the class to predict), `SPURIOUS` (a nuisance attribute: Waterbirds' background, CelebA's
sex) and `TEXT` (the word written on the image, for typographic attacks).

Kept free of torch and transformers so that readers import instantly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from clipsteer.errors import InputFormatError


class ImageReadError(InputFormatError):
    """An image that cannot be decoded; the message names the file (or item) and what was expected."""


@runtime_checkable
class ImageDataset(Protocol):
    def __len__(self) -> int: ...

    def load(self, i: int) -> Image.Image:
        """Image `i` as RGB; raises ImageReadError (naming the file) when it cannot be decoded."""
        ...

    def fingerprint(self) -> str:
        """A short string identifying the contents and order of the dataset."""
        ...


@runtime_checkable
class ModelMatched(Protocol):
    """A dataset whose images depend on the model they feed: the synthetic world renders the world a toy CLIP
    was trained on (its `world.json`), so that a model trained on a changed world is not measured on another."""

    def for_model(self, model_dir: Path) -> ImageDataset:
        """This dataset as seen by the checkpoint in `model_dir` (itself when the model says nothing)."""
        ...


LABEL, SPURIOUS, TEXT = "label", "spurious", "text"


class TextMasked(Protocol):
    def text_mask(self, i: int) -> np.ndarray:
        """bool [H, W] in the coordinates of `load(i)`: the pixels of the written text."""
        ...


def text_mask(dataset: ImageDataset, i: int) -> np.ndarray | None:
    """`dataset.text_mask(i)` when the dataset knows where its text is, else None."""
    fn = getattr(dataset, "text_mask", None)
    return np.asarray(fn(i), dtype=bool) if callable(fn) else None


def group_labels(dataset: NamedLabelledDataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """(group int64 [N], group names): group = label · n_spurious + spurious, named 'label/spurious'."""
    labels, names = dataset.labels(), dataset.label_names()
    for column in (LABEL, SPURIOUS):
        if column not in labels:
            raise ValueError(f"{dataset!r} has no {column!r} labels (it has {sorted(labels)}); group metrics "
                             f"need a class label and a spurious attribute")
    n_spurious = len(names[SPURIOUS])
    group = labels[LABEL] * n_spurious + labels[SPURIOUS]
    group_names = tuple(f"{y}/{a}" for y in names[LABEL] for a in names[SPURIOUS])
    return group.astype(np.int64), group_names


def image_name(dataset: ImageDataset, i: int) -> str:
    """`dataset.name(i)` when the dataset provides names, else `"#<i>"`."""
    name = getattr(dataset, "name", None)
    return str(name(i)) if callable(name) else f"#{i}"


def check_index(i: int, n: int, what: str) -> int:
    """Validate an image index against a dataset of `n` images (negative indices are refused)."""
    if not isinstance(i, int | np.integer) or not 0 <= int(i) < n:
        raise IndexError(f"{what}: image index {i!r} out of range; expected an int in 0..{n - 1}")
    return int(i)


@runtime_checkable
class LabelledDataset(ImageDataset, Protocol):
    """A dataset whose images carry a class label (what a zero-shot classifier should predict).

    `labels()["label"]` is int [N] indexing `class_names` (−1: the image shows no class). Other
    entries are optional per-image arrays [N], e.g. `group` (int, for group metrics) or a spurious
    attribute; their meaning is documented by the dataset.
    """

    class_names: tuple[str, ...]

    def labels(self) -> dict[str, np.ndarray]: ...


@runtime_checkable
class FactorAnnotated(Protocol):
    """A dataset with ground-truth binary factors per image and per patch (e.g. the synthetic world,
    or attribute annotations), named `<group>:<value>` such as `shape:star` or `background:water`."""

    def image_factors(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """{factor: bool [n]} for images [start, stop)."""
        ...

    def patch_factors(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """{factor: bool [n, P]} per patch (row-major patch grid, CLS excluded) for images [start, stop)."""
        ...


@runtime_checkable
class ConceptAnnotated(Protocol):
    """A dataset that knows what its images can show (e.g. the synthetic world): a concept vocabulary of
    phrases, each with the factor names it mentions, and per-image labels for those factor names. Steerability
    reads its vocabulary from here by default and checks each steered unit's top concept against the factors
    the unit detects (the concept match), without importing the dataset's package."""

    def concept_vocabulary(self) -> list[tuple[str, frozenset[str]]]:
        """[(phrase, {factor name, ...})], e.g. ("a red star", {"colour:red", "shape:star"})."""
        ...

    def concept_labels(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """{factor name: bool [n]} for images [start, stop), for every name the vocabulary uses."""
        ...


@runtime_checkable
class Captioned(Protocol):
    """A dataset whose images have captions (what a CLIP's text tower reads for them)."""

    def captions(self, start: int, stop: int) -> list[str]:
        """The captions of images [start, stop)."""
        ...


@runtime_checkable
class NamedLabelledDataset(LabelledDataset, Protocol):
    """A `LabelledDataset` whose every label column has named values (group tasks, typography)."""

    def labels(self) -> dict[str, np.ndarray]:
        """Column name → int64 [N] label values (−1: unknown), value v meaning `label_names()[name][v]`."""
        ...

    def label_names(self) -> dict[str, tuple[str, ...]]:
        """Column name → the names of its values (e.g. 'label' → ('landbird', 'waterbird'))."""
        ...
