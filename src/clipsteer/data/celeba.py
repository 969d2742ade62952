"""CelebA: `list_attr_celeba.txt` (count line, header of 40 attribute names, then `file v1 … v40` with
±1 values), `list_eval_partition.txt` (`file split`, 0 train / 1 val / 2 test) and `img_align_celeba/`.

The default task is the standard one: label = `Blond_Hair`, spurious = `Male`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clipsteer.data.labelled import DatasetFormatError, LabelledFiles, check_root, check_split
from clipsteer.data.protocol import LABEL, SPURIOUS

SPLITS = {"train": 0, "val": 1, "test": 2}
# Value names usable in prompts ("a photo of a celebrity with {}.") for the attributes of the standard task.
PROMPT_NAMES = {"Blond_Hair": ("dark hair", "blond hair"), "Male": ("female", "male")}
REQUIRED = ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba")


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, file names, values int8 [N, A] in {0, 1})."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        raise DatasetFormatError(f"{path}: expected a count line, a header of attribute names and rows")
    header = lines[1]
    files, values = [], []
    for n, parts in enumerate(lines[2:], start=3):
        if len(parts) != len(header) + 1:
            raise DatasetFormatError(f"{path}:{n}: {len(parts) - 1} values for {len(header)} attributes")
        try:
            row = [int(v) for v in parts[1:]]
        except ValueError:
            raise DatasetFormatError(f"{path}:{n}: attribute values must be 1 or -1") from None
        if any(v not in (1, -1) for v in row):
            raise DatasetFormatError(f"{path}:{n}: attribute values must be 1 or -1")
        files.append(parts[0])
        values.append(row)
    return header, files, (np.array(values, dtype=np.int8).reshape(-1, len(header)) > 0).astype(np.int8)


def read_partition(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DatasetFormatError(f"{path}:{n}: expected 'FILE SPLIT' with SPLIT 0, 1 or 2, got {line!r}")
        out[parts[0]] = int(parts[1])
    return out


def celeba(root: str, split: str, target: str = "Blond_Hair", spurious: str = "Male") -> LabelledFiles:
    folder = check_root(root, REQUIRED, "CelebA")
    check_split(split, list(SPLITS), "CelebA")
    header, files, values = read_attributes(folder / "list_attr_celeba.txt")
    for attribute in (target, spurious):
        if attribute not in header:
            raise DatasetFormatError(f"{folder / 'list_attr_celeba.txt'}: no attribute {attribute!r}; "
                                     f"it has {header}")
    partition = read_partition(folder / "list_eval_partition.txt")
    unknown = [f for f in files if f not in partition]
    if unknown:
        raise DatasetFormatError(f"{folder / 'list_eval_partition.txt'}: no split for {unknown[:3]} "
                                 f"({len(unknown)} files)")
    keep = np.array([partition[f] == SPLITS[split] for f in files], dtype=bool)
    chosen = [f"img_align_celeba/{f}" for f, k in zip(files, keep, strict=True) if k]
    columns = {LABEL: values[keep, header.index(target)], SPURIOUS: values[keep, header.index(spurious)]}
    names = {LABEL: PROMPT_NAMES.get(target, (f"not {target}", target)),
             SPURIOUS: PROMPT_NAMES.get(spurious, (f"not {spurious}", spurious))}
    return LabelledFiles(folder, chosen, columns, names, f"CelebA[{split}]")


def open_celeba(root: str, split: str) -> LabelledFiles:
    """Blond_Hair (label) vs Male (spurious), the standard CelebA spurious-correlation task."""
    return celeba(root, split)
