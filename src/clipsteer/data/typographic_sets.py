"""Real typographic-attack sets: every image shows an object with a word written on it.

- RTA-100 (Defense-Prefix) and PAINT (`mlfoundations/patching`): files named `label=X_text=Y.<ext>`
  anywhere under the root. Candidate classes (the `label` names) are the union of all labels and
  attack words, as in the Defense-Prefix evaluation code.
- Disentangling (Materzyńska et al. 2022): `annotations.json` = {file: {"true object": X,
  "typographic attack label": Y}} and `classes.json` (its keys, or list items, are the candidates).
Columns: `label` (true object) and `text` (the written word; names may include non-classes).
There are no official splits: the whole set is `test`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from clipsteer.data.folder import IMAGE_EXTENSIONS
from clipsteer.data.labelled import DatasetFormatError, LabelledFiles, check_root, check_split
from clipsteer.data.protocol import LABEL, TEXT

NAME_PATTERN = re.compile(r"^label=(?P<label>.+?)_text=(?P<text>.+)$")
SPLITS = ("test",)


def label_text_folder(root: str, split: str, fmt: str) -> LabelledFiles:
    folder = check_root(root, [], fmt)
    check_split(split, SPLITS, fmt)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not files:
        raise DatasetFormatError(f"{fmt} root {folder}: no image files (expected label=X_text=Y.png names)")
    labels, texts = [], []
    for rel in files:
        match = NAME_PATTERN.match(Path(rel).stem)
        if match is None:
            raise DatasetFormatError(f"{fmt}: file {folder / rel} is not named label=X_text=Y.<ext>")
        labels.append(match["label"].replace("_", " "))
        texts.append(match["text"].replace("_", " "))
    candidates = tuple(sorted(set(labels) | set(texts)))
    index = {c: k for k, c in enumerate(candidates)}
    columns = {LABEL: np.array([index[v] for v in labels]), TEXT: np.array([index[v] for v in texts])}
    return LabelledFiles(folder, files, columns, {LABEL: candidates, TEXT: candidates}, fmt)


def open_rta100(root: str, split: str) -> LabelledFiles:
    return label_text_folder(root, split, "RTA-100")


def open_paint(root: str, split: str) -> LabelledFiles:
    return label_text_folder(root, split, "PAINT")


def open_disentangling(root: str, split: str) -> LabelledFiles:
    folder = check_root(root, ["annotations.json", "classes.json"], "Disentangling")
    check_split(split, SPLITS, "Disentangling")
    annotations = _read_json(folder / "annotations.json")
    classes = _read_json(folder / "classes.json")
    if not isinstance(annotations, dict) or not isinstance(classes, dict | list):
        raise DatasetFormatError(f"Disentangling {folder}: annotations.json must be an object keyed by file "
                                 f"and classes.json an object or list of class names")
    candidates = tuple(classes)
    files, labels, words = [], [], []
    for name in sorted(annotations):
        entry = annotations[name]
        try:
            obj, word = entry["true object"], entry["typographic attack label"]
        except (KeyError, TypeError):
            raise DatasetFormatError(f"{folder / 'annotations.json'}: entry {name!r} needs 'true object' and "
                                     f"'typographic attack label'") from None
        if obj not in candidates:
            raise DatasetFormatError(f"{folder / 'annotations.json'}: {name!r} has true object {obj!r}, "
                                     f"not in classes.json")
        files.append(name)
        labels.append(candidates.index(obj))
        words.append(word)
    text_names = tuple(dict.fromkeys([*candidates, *sorted(set(words))]))
    columns = {LABEL: np.array(labels), TEXT: np.array([text_names.index(w) for w in words])}
    return LabelledFiles(folder, files, columns, {LABEL: candidates, TEXT: text_names}, "Disentangling")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(f"{path}: not valid JSON ({err})") from err
