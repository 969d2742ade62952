"""Rasterise a `Scene`: image uint8 [S, S, 3] and a per-pixel layer map uint8 [S, S].

Layer codes (what is visible at each pixel, later layers on top): 0 background, 1 object, 2 note paper,
3 word ink. `patch_counts` turns a layer map into per-patch pixel counts on the model's patch grid.
"""

from __future__ import annotations

import numpy as np

from clipsteer.world.backgrounds import render_background
from clipsteer.world.config import WorldConfig
from clipsteer.world.font import render_word
from clipsteer.world.scene import Scene
from clipsteer.world.shapes import shape_mask

LAYERS: tuple[str, ...] = ("background", "object", "note", "word")
BACKGROUND, OBJECT, NOTE, WORD = range(4)


def render(scene: Scene, world_config: WorldConfig) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 [S, S, 3], layers uint8 [S, S]). The texture comes from the scene's own seed key,
    so a scene and its variants (clean / blank note / other word) share every background pixel."""
    size = world_config.image_size
    texture_rng = np.random.default_rng([*scene.seed_key, 7919])
    img = render_background(scene.background, size, texture_rng)
    layers = np.zeros((size, size), dtype=np.uint8)
    if scene.shape is not None:
        mask = shape_mask(scene.shape, size, scene.cx, scene.cy, scene.radius, scene.rotation)
        img[mask] = scene.rgb
        layers[mask] = OBJECT
    if scene.text is not None:
        text = scene.text
        if text.note:
            x0, y0, x1, y1 = (int(np.clip(v, 0, size)) for v in text.note_box(world_config.max_text_width))
            img[y0:y1, x0:x1] = text.note_colour
            layers[y0:y1, x0:x1] = NOTE
        if text.ink:
            ink = render_word(text.word, text.height, world_config.max_text_width)
            x0, y0, x1, y1 = text.box(world_config.max_text_width)
            assert 0 <= x0 and 0 <= y0 and x1 <= size and y1 <= size, f"word box {x0, y0, x1, y1} off the image"
            img[y0:y1, x0:x1][ink] = text.ink_colour
            layers[y0:y1, x0:x1][ink] = WORD
    return np.clip(img, 0, 255).astype(np.uint8), layers


def patch_counts(layers: np.ndarray, patch_size: int) -> np.ndarray:
    """layers uint8 [..., S, S] → uint8 [..., len(LAYERS), G, G]: pixels of each layer in each patch."""
    *lead, s, s2 = layers.shape
    assert s == s2 and s % patch_size == 0, f"layer map {layers.shape} does not tile into {patch_size}px patches"
    assert patch_size * patch_size <= 255, "counts are stored as uint8"
    g = s // patch_size
    onehot = layers[..., None, :, :] == np.arange(len(LAYERS), dtype=np.uint8).reshape(-1, 1, 1)
    tiles = onehot.reshape(*lead, len(LAYERS), g, patch_size, g, patch_size)
    return tiles.sum(axis=(-3, -1), dtype=np.int32).astype(np.uint8)
