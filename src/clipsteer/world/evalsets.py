"""Evaluation sets: held out from pretraining by seed, group-balanced, each with train/val/test splits.

Tasks (`TASKS`); every item is a dict of named scene variants (plain tasks have the one variant "images"):
- `pretraining`: the pretraining distribution itself (words, text-only images and all); for harvesting.
- `zero_shot`: the pretraining distribution of objects with no words ("clean", in-distribution).
- `zero_shot_balanced`: shapes × colours × backgrounds drawn independently and uniformly, no words.
- `background` (Waterbirds-like): label = shape group (WATER_SHAPES=0 / LAND_SHAPES=1), spurious =
  background family (water=0 / land=1); group = 2·label + family, balanced (item i is in group i % 4).
- `attribute` (CelebA-like): label = shape group (RED_SHAPES=0 / YELLOW_SHAPES=1), spurious = colour
  (red=0 / yellow=1); group = 2·label + colour, balanced.
- `typographic`: pairs of one scene in three variants: "clean" (no note, no word), "attacked" (a
  sticky note with a wrong class word) and "blank" (the same note with no word: the occlusion control).
  Shape i % 8 is balanced; the attacked word is uniform over the other classes.
Seeds: the key of item i is (EVAL_SEED + 1000·split_id + task_id, i); pretraining uses small seeds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from clipsteer.world.config import WorldConfig
from clipsteer.world.distribution import (
    LAND_TYPES,
    WATER_TYPES,
    background_for,
    colour_for,
    other_shape,
    pick,
    pretraining_scene,
)
from clipsteer.world.factors import (
    ATTRIBUTE_COLOURS,
    BACKGROUND_NAMES,
    COLOUR_NAMES,
    LAND_SHAPES,
    RED_SHAPES,
    SHAPES,
    WATER_SHAPES,
    YELLOW_SHAPES,
)
from clipsteer.world.scene import Scene, draw_scene

SPLITS: tuple[str, ...] = ("train", "val", "test")
TASKS: tuple[str, ...] = ("pretraining", "zero_shot", "zero_shot_balanced", "background", "attribute", "typographic")
VARIANTS: dict[str, tuple[str, ...]] = {t: ("images",) for t in TASKS} | {"typographic": ("clean", "attacked", "blank")}
DEFAULT_SIZES: dict[str, int] = {"pretraining": 20000, "zero_shot": 2000, "zero_shot_balanced": 2000,
                                 "background": 2000, "attribute": 2000, "typographic": 1000}
EVAL_SEED = 1_000_000

# The two group tasks: (label groups of shapes, spurious-factor names) and how to read them off labels.
GROUP_TASKS: dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, str]]] = {
    "background": ((WATER_SHAPES, LAND_SHAPES), ("water", "land")),
    "attribute": ((RED_SHAPES, YELLOW_SHAPES), ATTRIBUTE_COLOURS),
}
GROUP_LABEL_NAMES = {"background": ("water_shape", "land_shape"), "attribute": ("red_shape", "yellow_shape")}


def group_names(task: str) -> tuple[str, ...]:
    """'<label>/<spurious>' for group = 2·label + spurious, e.g. 'water_shape/land' (a minority group)."""
    _, spurious = GROUP_TASKS[task]
    return tuple(f"{lab}/{sp}" for lab in GROUP_LABEL_NAMES[task] for sp in spurious)


def task_seed(task: str, split: str) -> int:
    if task not in TASKS:
        raise ValueError(f"unknown world task {task!r}; choose from {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return EVAL_SEED + 1000 * SPLITS.index(split) + TASKS.index(task)


def _group_scene(task: str, seed: int, i: int, world_config: WorldConfig) -> Scene:
    key = (seed, i)
    rng = np.random.default_rng(key)
    (label_shapes, _), group = GROUP_TASKS[task], i % 4
    label, spurious = divmod(group, 2)
    shape = pick(rng, label_shapes[label])
    if task == "background":
        background = pick(rng, (WATER_TYPES, LAND_TYPES)[spurious])
        colour = colour_for(shape, rng, world_config)
    else:
        background = pick(rng, BACKGROUND_NAMES)
        colour = ATTRIBUTE_COLOURS[spurious]
    return draw_scene(rng, world_config, key=key, background=background, shape=shape, colour=colour, word=None, note=False)


def _balanced_scene(seed: int, i: int, world_config: WorldConfig) -> Scene:
    key = (seed, i)
    rng = np.random.default_rng(key)
    return draw_scene(rng, world_config, key=key, background=pick(rng, BACKGROUND_NAMES), shape=SHAPES[i % len(SHAPES)],
                      colour=pick(rng, COLOUR_NAMES), word=None, note=False)


def _typographic_scenes(seed: int, i: int, world_config: WorldConfig) -> dict[str, Scene]:
    key = (seed, i)
    rng = np.random.default_rng(key)
    shape = SHAPES[i % len(SHAPES)]
    background, colour = background_for(shape, rng, world_config), colour_for(shape, rng, world_config)
    attacked = draw_scene(rng, world_config, key=key, background=background, shape=shape, colour=colour,
                          word=other_shape(shape, rng), note=True)
    return {"clean": attacked.without_text(), "attacked": attacked, "blank": attacked.blank()}


def scene_maker(task: str, split: str, world_config: WorldConfig) -> Callable[[int], dict[str, Scene]]:
    """item index → {variant: Scene}; a pure function of (task, split, world_config, index)."""
    seed = task_seed(task, split)
    if task == "pretraining":
        return lambda i: {"images": pretraining_scene(seed, i, world_config)}
    if task == "zero_shot":
        clean = dataclasses.replace(world_config, p_text=0.0, p_text_only=0.0)
        return lambda i: {"images": pretraining_scene(seed, i, clean)}
    if task == "zero_shot_balanced":
        return lambda i: {"images": _balanced_scene(seed, i, world_config)}
    if task in GROUP_TASKS:
        return lambda i: {"images": _group_scene(task, seed, i, world_config)}
    assert task == "typographic"
    return lambda i: _typographic_scenes(seed, i, world_config)


def groups_of(task: str, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(label int [N] in {0,1}, group int [N] in 0..3) of a group task's label arrays."""
    (label_shapes, spurious_names) = GROUP_TASKS[task]
    shape_names = np.array(SHAPES)[labels["shape"]]
    label = np.where(np.isin(shape_names, label_shapes[1]), 1, 0)
    assert np.isin(shape_names, label_shapes[0] + label_shapes[1]).all(), f"{task}: a shape outside the task"
    if task == "background":
        spurious = labels["family"].astype(int)
    else:
        colour_names = np.array(COLOUR_NAMES)[labels["colour"]]
        assert np.isin(colour_names, spurious_names).all(), "attribute task: a colour outside red/yellow"
        spurious = (colour_names == spurious_names[1]).astype(int)
    return label, 2 * label + spurious
