"""World splits as datasets: the `ImageDataset` protocol (`len`, `load(i)`, `fingerprint()`) plus a fast
array accessor (`arrays()` → `WorldBatch`: images uint8 [N, S, S, 3], labels, per-patch masks).

Spec strings (`clipsteer.data.open_dataset("world:<spec>")`): `TASK[/SPLIT[/VARIANT]][:N]`, e.g.
`pretraining/train:20000`, `background/test`, `typographic/test/attacked`. Defaults: split `train`,
the task's first variant, N = DEFAULT_SIZES[task]. A bare split (`world:val`) means the pretraining task.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from clipsteer.world.config import WorldConfig
from clipsteer.world.evalsets import DEFAULT_SIZES, SPLITS, TASKS, VARIANTS, scene_maker
from clipsteer.world.factors import SHAPES
from clipsteer.world.generate import WorldBatch, render_scenes
from clipsteer.world.masks import patch_masks
from clipsteer.world.render import render
from clipsteer.world.version import WORLD_VERSION

if TYPE_CHECKING:
    from clipsteer.world.labelled import WorldLabelled


@dataclasses.dataclass(frozen=True)
class WorldDataset:
    """`n` items of one task/split/variant of the world; images render on demand, deterministically.

    Implements `LabelledDataset` (class = the object's shape; −1 on text-only images), `FactorAnnotated`
    (ground-truth factors per image and per patch), `ConceptAnnotated` (the caption-phrase vocabulary and its
    factor labels) and `Captioned` from `clipsteer.data.protocol`.
    """

    class_names = SHAPES

    task: str = "pretraining"
    split: str = "train"
    variant: str = "images"
    n: int = 0  # 0: the task's default size
    world: WorldConfig = dataclasses.field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown world task {self.task!r}; choose from {TASKS}")
        if self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; choose from {SPLITS}")
        if self.variant not in VARIANTS[self.task]:
            raise ValueError(f"task {self.task!r} has variants {VARIANTS[self.task]}, not {self.variant!r}")
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        if self.n == 0:
            object.__setattr__(self, "n", DEFAULT_SIZES[self.task])

    def __len__(self) -> int:
        return self.n

    def scene(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(f"world {self.task}/{self.split}: index {i} out of range 0..{self.n - 1}")
        return scene_maker(self.task, self.split, self.world)(i)[self.variant]

    def load(self, i: int) -> Image.Image:
        image, _ = render(self.scene(int(i)), self.world)
        return Image.fromarray(image, mode="RGB")

    def name(self, i: int) -> str:
        return f"world:{self.task}/{self.split}/{self.variant}#{i}"

    def for_model(self, model_dir: Path) -> WorldDataset:
        """`ModelMatched`: rendered in the world the toy CLIP in `model_dir` was trained on (its world.json);
        unchanged for any other checkpoint (the habitat toy CLIP on default-world typographic images: clean
        accuracy 96.1 instead of 97.6; `benchmarks/results/habitat_world.md`)."""
        from clipsteer.world.toy_clip import WORLD_FILE, world_config_of

        if not (Path(model_dir) / WORLD_FILE).is_file():
            return self
        return dataclasses.replace(self, world=world_config_of(Path(model_dir)))

    def fingerprint(self) -> str:
        text = repr((WORLD_VERSION, self.task, self.split, self.variant, self.n, dataclasses.asdict(self.world)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def arrays(self, start: int = 0, stop: int | None = None) -> WorldBatch:
        """Items [start, stop) as arrays (images, captions, labels, patch counts)."""
        stop = self.n if stop is None else stop
        assert 0 <= start <= stop <= self.n, f"bad range [{start}, {stop}) of {self.n}"
        return _render_range(self, start, stop)

    def masks(self, batch: WorldBatch) -> dict[str, np.ndarray]:
        return patch_masks(batch.patch_counts)

    def labels(self) -> dict[str, np.ndarray]:
        """{"label": shape int [N]} plus every factor label of `WorldBatch.labels`."""
        labels = self.arrays().labels
        return {"label": np.asarray(labels["shape"]).astype(np.int64), **labels}

    def image_factors(self, start: int, stop: int) -> dict[str, np.ndarray]:
        from clipsteer.world.factor_labels import image_factors

        return image_factors(self.arrays(start, stop))

    def patch_factors(self, start: int, stop: int) -> dict[str, np.ndarray]:
        from clipsteer.world.factor_labels import patch_factors

        return patch_factors(self.arrays(start, stop))

    def captions(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The captions of items [start, stop) (`Captioned`: what the toy CLIP's text tower was trained on)."""
        return list(self.arrays(start, stop).captions)

    def concept_vocabulary(self) -> list[tuple[str, frozenset[str]]]:
        """The world's caption phrases with the factors each names (`ConceptAnnotated`; `world.concepts`)."""
        from clipsteer.world.concepts import phrase_vocabulary

        return phrase_vocabulary()

    def concept_labels(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """{factor name: bool [stop − start]} for items [start, stop), every name the phrases use."""
        from clipsteer.world.concepts import concept_labels

        return concept_labels(self.arrays(start, stop))


@functools.lru_cache(maxsize=16)
def _render_range(ds: WorldDataset, start: int, stop: int) -> WorldBatch:
    make = scene_maker(ds.task, ds.split, ds.world)
    return render_scenes([make(i)[ds.variant] for i in range(start, stop)], ds.world)


def parse_spec(spec: str, world: WorldConfig | None = None) -> WorldDataset:
    """`TASK[/SPLIT[/VARIANT]][:N]` (or a bare split for the pretraining task) → WorldDataset."""
    body, _, count = spec.partition(":")
    parts = [p for p in body.split("/") if p]
    if not parts:
        raise ValueError(f"empty world spec {spec!r}; expected TASK[/SPLIT[/VARIANT]][:N], tasks {TASKS}")
    if parts[0] in SPLITS:
        parts = ["pretraining", *parts]
    if len(parts) > 3:
        raise ValueError(f"world spec {spec!r} has too many parts; expected TASK[/SPLIT[/VARIANT]][:N]")
    task = parts[0]
    split = parts[1] if len(parts) > 1 else "train"
    variant = parts[2] if len(parts) > 2 else VARIANTS.get(task, ("images",))[0]
    try:
        n = int(count) if count else 0
    except ValueError:
        raise ValueError(f"world spec {spec!r}: N must be an integer, got {count!r}") from None
    return WorldDataset(task=task, split=split, variant=variant, n=n, world=world or WorldConfig())


def open_world_dataset(spec: str, split: str | None = None) -> WorldDataset | WorldLabelled:
    """Entry point for `clipsteer.data.open_dataset('world:<spec>'[, split])`: without a split, the spec
    names one (`TASK[/SPLIT[/VARIANT]][:N]`); with one, it is a labelled task spec (`TASK[/VARIANT][:N]`,
    see `clipsteer.world.labelled`)."""
    if split is None:
        return parse_spec(spec)
    from clipsteer.world.labelled import open_world_labelled

    return open_world_labelled(spec, split)
