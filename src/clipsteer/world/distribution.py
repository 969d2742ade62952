"""The pretraining distribution: which categorical factors each training image gets.

`pretraining_scene(seed, index, world_config)` is a pure function of (seed, index), so any image of the stream can
be regenerated on its own (random access, resumable training, reproducible shards).
"""

from __future__ import annotations

import numpy as np

from clipsteer.world.config import WorldConfig
from clipsteer.world.factors import (
    ATTRIBUTE_COLOURS,
    BACKGROUNDS,
    COLOUR_NAMES,
    HABITATS,
    LAND_SHAPES,
    RED_SHAPES,
    SHAPES,
    WATER_SHAPES,
    YELLOW_SHAPES,
)
from clipsteer.world.scene import Scene, draw_scene

WATER_TYPES = tuple(b for b, f in BACKGROUNDS.items() if f == "water")
LAND_TYPES = tuple(b for b, f in BACKGROUNDS.items() if f == "land")


def pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def background_for(shape: str | None, rng: np.random.Generator, world_config: WorldConfig) -> str:
    """Waterbirds-like: a water (land) shape is on water (land) with probability background_strength; on its
    own family it is drawn as its habitat with probability habitat_strength, else as a uniform type of the family."""
    p_water = 0.5
    if shape in WATER_SHAPES:
        p_water = world_config.background_strength
    elif shape in LAND_SHAPES:
        p_water = 1.0 - world_config.background_strength
    types = WATER_TYPES if rng.random() < p_water else LAND_TYPES
    # habitat_strength 0 draws nothing extra, so world 1.0's random stream (and its images) stay as they were
    if world_config.habitat_strength > 0 and HABITATS.get(shape or "") in types and \
            rng.random() < world_config.habitat_strength:
        return HABITATS[shape]  # type: ignore[index]
    return pick(rng, types)


def colour_for(shape: str, rng: np.random.Generator, world_config: WorldConfig) -> str:
    """CelebA-like: red (yellow) shapes are red (yellow) with probability attribute_strength, else the other."""
    red, yellow = ATTRIBUTE_COLOURS
    if shape in RED_SHAPES:
        return red if rng.random() < world_config.attribute_strength else yellow
    if shape in YELLOW_SHAPES:
        return yellow if rng.random() < world_config.attribute_strength else red
    return pick(rng, COLOUR_NAMES)


def other_shape(shape: str, rng: np.random.Generator) -> str:
    return pick(rng, tuple(s for s in SHAPES if s != shape))


def pretraining_scene(seed: int, index: int, world_config: WorldConfig) -> Scene:
    key = (seed, index)
    rng = np.random.default_rng(key)
    note = bool(rng.random() < world_config.p_note)
    if rng.random() < world_config.p_text_only:
        word = pick(rng, SHAPES)
        return draw_scene(rng, world_config, key=key, background=background_for(None, rng, world_config), shape=None, colour=None,
                          word=word, note=note)
    shape = pick(rng, SHAPES)
    background = background_for(shape, rng, world_config)
    colour = colour_for(shape, rng, world_config)
    word = None
    if rng.random() < world_config.p_text:
        word = shape if rng.random() < world_config.p_text_match else other_shape(shape, rng)
    return draw_scene(rng, world_config, key=key, background=background, shape=shape, colour=colour, word=word, note=note)
