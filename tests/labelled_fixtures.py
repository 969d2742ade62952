"""Tiny dataset folders in the real on-disk formats (Waterbirds, CelebA, RTA-100/PAINT, Disentangling)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def save_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30), seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour)[None, None] + rng.integers(-20, 21, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def write_waterbirds(root: Path, per_group: dict[str, int] | None = None) -> Path:
    """metadata.csv (img_filename, y, place, split) + images; background colour = place, a bird-ish blob = y."""
    per_group = per_group or {"train": 6, "val": 4, "test": 4}
    rows = ["img_id,img_filename,y,split,place,place_filename"]
    n = 0
    for split_id, split in enumerate(("train", "val", "test")):
        for _ in range(per_group[split]):
            for y in (0, 1):
                for place in (0, 1):
                    name = f"{'001.Land' if y == 0 else '002.Water'}_bird/img_{n:04d}.jpg"
                    save_image(root / name, (40, 90 + 100 * place, 200 - 150 * place), seed=n)
                    rows.append(f"{n},{name},{y},{split_id},{place},x/{n}.jpg")
                    n += 1
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def write_celeba(root: Path) -> Path:
    names = ["5_o_Clock_Shadow", "Blond_Hair", "Male", "Young"]
    files, lines = [], []
    for i in range(12):
        blond, male = i % 2, (i // 2) % 2
        f = f"{i + 1:06d}.jpg"
        save_image(root / "img_align_celeba" / f, (200 if blond else 60, 120, 90), seed=i)
        values = [1 if i % 3 == 0 else -1, 1 if blond else -1, 1 if male else -1, 1]
        lines.append(f + " " + " ".join(f"{v:2d}" for v in values))
        files.append(f)
    (root / "list_attr_celeba.txt").write_text(f"{len(files)}\n" + " ".join(names) + "\n" + "\n".join(lines) + "\n")
    parts = [f"{f} {0 if i < 6 else 1 if i < 9 else 2}" for i, f in enumerate(files)]
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def write_label_text(root: Path) -> Path:
    """RTA-100 / PAINT: label=X_text=Y.<ext> file names."""
    for i, (label, text) in enumerate([("dog", "cat"), ("cat", "mouse"), ("mouse", "dog"), ("ice_cream", "dog")]):
        save_image(root / f"label={label}_text={text}.{'png' if i % 2 else 'jpg'}", (i * 50, 100, 100), seed=i)
    return root


def write_disentangling(root: Path) -> Path:
    annotations = {"IMG_0001.JPG": {"true object": "cup", "typographic attack label": "good"},
                   "IMG_0002.JPG": {"true object": "apple", "typographic attack label": "cup"},
                   "IMG_0003.JPG": {"true object": "cup", "typographic attack label": "apple"}}
    for i, name in enumerate(annotations):
        save_image(root / name, (i * 60, 50, 50), seed=i)
    (root / "annotations.json").write_text(json.dumps(annotations))
    (root / "classes.json").write_text(json.dumps({"apple": "an apple", "cup": "a cup", "pen": "a pen"}))
    return root
