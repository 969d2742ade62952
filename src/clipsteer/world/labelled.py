"""The world's evaluation tasks through the generic labelled-dataset protocol (`clipsteer.data`).

Spec body (`open_labelled("world:BODY", split)`): `TASK[/VARIANT][:N]`, e.g. `background`,
`attribute:1000`, `typographic/attacked`. Columns:
- group tasks (`background`, `attribute`): `label` (which shape group) and `spurious` (background
  family / colour), so that group = 2·label + spurious as in `evalsets.groups_of`;
- `typographic`: `label` (the shape) and `text` (the wrong word the attacked variant shows, in every
  variant so that the three variants stay paired); `text_mask(i)` is the word's ink.
A label value can stand for several shapes (`label_prompts`): a zero-shot classifier prompts each
shape and maps the winning shape to its label, as `world evaluate` does.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
from PIL import Image

from clipsteer.data.protocol import LABEL, SPURIOUS, TEXT
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.evalsets import GROUP_LABEL_NAMES, GROUP_TASKS, VARIANTS, groups_of, scene_maker
from clipsteer.world.factors import SHAPES
from clipsteer.world.generate import scene_labels
from clipsteer.world.render import WORD, render

LABELLED_TASKS = ("background", "attribute", "typographic")
WORLD_TEMPLATES = ("a photo of a {}",)  # the toy tokenizer splits off punctuation as an unknown word


@dataclasses.dataclass(frozen=True)
class WorldLabelled:
    """A world task split as a `LabelledDataset` (images render on demand, deterministically)."""

    images: WorldDataset
    templates: tuple[str, ...] = WORLD_TEMPLATES

    def __post_init__(self) -> None:
        if self.images.task not in LABELLED_TASKS:
            raise ValueError(f"world task {self.images.task!r} has no labelled form; choose from {LABELLED_TASKS}")

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        d = self.images
        return f"world:{d.task}/{d.split}/{d.variant}(n={len(d)})"

    def load(self, i: int) -> Image.Image:
        return self.images.load(i)

    def name(self, i: int) -> str:
        return self.images.name(i)

    def fingerprint(self) -> str:
        return self.images.fingerprint()

    def for_model(self, model_dir: Path) -> WorldLabelled:
        """`ModelMatched`: the same task rendered in the model's world (`WorldDataset.for_model`)."""
        return dataclasses.replace(self, images=self.images.for_model(model_dir))

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_names()[LABEL]

    def labels(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in _labels(self.images).items()}

    def label_names(self) -> dict[str, tuple[str, ...]]:
        task = self.images.task
        if task == "typographic":
            return {LABEL: SHAPES, TEXT: SHAPES}
        return {LABEL: GROUP_LABEL_NAMES[task], SPURIOUS: GROUP_TASKS[task][1]}

    def label_prompts(self) -> tuple[tuple[str, ...], ...]:
        """Per label value, the shape names to prompt for it."""
        task = self.images.task
        return tuple((s,) for s in SHAPES) if task == "typographic" else GROUP_TASKS[task][0]

    def text_mask(self, i: int) -> np.ndarray:
        """bool [S, S]: pixels of word ink (empty for the clean and blank variants)."""
        _, layers = render(self.images.scene(int(i)), self.images.world)
        return layers == WORD


@functools.lru_cache(maxsize=32)
def _labels(ds: WorldDataset) -> dict[str, np.ndarray]:
    make = scene_maker(ds.task, ds.split, ds.world)
    if ds.task == "typographic":
        scenes = [make(i)["attacked"] for i in range(len(ds))]
        raw = [scene_labels(s, ds.world) for s in scenes]
        return {LABEL: np.array([r["shape"] for r in raw], dtype=np.int64),
                TEXT: np.array([r["word"] for r in raw], dtype=np.int64)}
    raw = [scene_labels(make(i)[ds.variant], ds.world) for i in range(len(ds))]
    arrays = {k: np.array([r[k] for r in raw]) for k in ("shape", "colour", "family")}
    label, group = groups_of(ds.task, arrays)
    return {LABEL: label.astype(np.int64), SPURIOUS: (group - 2 * label).astype(np.int64)}


def open_world_labelled(body: str, split: str) -> WorldLabelled:
    """`TASK[/VARIANT][:N]` at `split` → WorldLabelled (the opener behind `world:` labelled specs)."""
    head, _, count = body.partition(":")
    task, _, variant = head.partition("/")
    if task not in LABELLED_TASKS:
        raise ValueError(f"world labelled spec {body!r}: task must be one of {LABELLED_TASKS}")
    try:
        n = int(count) if count else 0
    except ValueError:
        raise ValueError(f"world labelled spec {body!r}: N must be an integer, got {count!r}") from None
    return WorldLabelled(WorldDataset(task=task, split=split, variant=variant or VARIANTS[task][0], n=n))
