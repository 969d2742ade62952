"""Render many scenes into arrays: `WorldBatch` (images, captions, factor labels, per-patch layer counts).

Label arrays (all length N; -1 means "absent"):
    shape, colour, background (type), family (0 water, 1 land), size (0 small, 1 big), word (index into
    SHAPES of the drawn word), note (0/1), word_matches (1 when the drawn word names the drawn shape),
    text_height (pixels, 0 without text), radius, cx, cy, rotation (float32).
`patch_counts` uint8 [N, 4, G, G]: visible pixels of background/object/note/word in each patch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clipsteer.world.captions import caption, size_word
from clipsteer.world.config import WorldConfig
from clipsteer.world.factors import BACKGROUND_NAMES, COLOUR_NAMES, FAMILIES, SHAPES, SIZES, family_of
from clipsteer.world.render import LAYERS, patch_counts, render
from clipsteer.world.scene import Scene

INT_LABELS = ("shape", "colour", "background", "family", "size", "word", "note", "word_matches", "text_height")
FLOAT_LABELS = ("radius", "cx", "cy", "rotation")


@dataclass(frozen=True)
class WorldBatch:
    images: np.ndarray  # uint8 [N, S, S, 3]
    captions: list[str]
    mentions: list[frozenset[str]]  # factors each caption mentions
    labels: dict[str, np.ndarray]  # INT_LABELS int16 [N], FLOAT_LABELS float32 [N]
    patch_counts: np.ndarray  # uint8 [N, len(LAYERS), G, G]

    def __len__(self) -> int:
        return len(self.images)


def scene_labels(scene: Scene, world_config: WorldConfig) -> dict[str, float]:
    word = scene.word
    has_shape = scene.shape is not None
    return {
        "shape": SHAPES.index(scene.shape) if has_shape else -1,
        "colour": COLOUR_NAMES.index(scene.colour) if has_shape else -1,  # type: ignore[arg-type]
        "background": BACKGROUND_NAMES.index(scene.background),
        "family": FAMILIES.index(family_of(scene.background)),
        "size": SIZES.index(size_word(scene, world_config)) if has_shape else -1,
        "word": SHAPES.index(word) if word is not None else -1,
        "note": int(scene.text is not None and scene.text.note),
        "word_matches": int(word is not None and word == scene.shape),
        "text_height": scene.text.height if scene.text is not None else 0,
        "radius": scene.radius, "cx": scene.cx, "cy": scene.cy, "rotation": scene.rotation,
    }


def render_scenes(scenes: Sequence[Scene], world_config: WorldConfig) -> WorldBatch:
    n, s = len(scenes), world_config.image_size
    images = np.empty((n, s, s, 3), dtype=np.uint8)
    layers = np.empty((n, s, s), dtype=np.uint8)
    captions, mentions = [], []
    rows = []
    for i, scene in enumerate(scenes):
        images[i], layers[i] = render(scene, world_config)
        text, mentioned = caption(scene, world_config)
        captions.append(text)
        mentions.append(mentioned)
        rows.append(scene_labels(scene, world_config))
    labels = {k: np.array([r[k] for r in rows], dtype=np.int16).reshape(n) for k in INT_LABELS}
    labels |= {k: np.array([r[k] for r in rows], dtype=np.float32).reshape(n) for k in FLOAT_LABELS}
    counts = patch_counts(layers, world_config.patch_size) if n else np.zeros((0, len(LAYERS), world_config.grid, world_config.grid), np.uint8)
    return WorldBatch(images=images, captions=captions, mentions=mentions, labels=labels, patch_counts=counts)


def render_indices(make_scene: Callable[[int], Scene], indices: Iterable[int], world_config: WorldConfig) -> WorldBatch:
    return render_scenes([make_scene(i) for i in indices], world_config)
