"""Ground-truth factors of synthetic-world images as binary labels, per image and per patch
(what `WorldDataset` serves through the `FactorAnnotated` protocol for factor recovery).

Image level: `shape:<name>`, `colour:<name>` (object images only), `background:<family>` (water/land),
`word:<name>` (the written word). Patch level (using the world's patch masks): a patch is positive for
`shape:X` / `colour:X` when it shows the object and the object is X, for `word:X` when it shows
word ink and the word is X, and for `background:F` when it shows only background of family F.
"""

from __future__ import annotations

import numpy as np

from clipsteer.world.factors import COLOUR_NAMES, FAMILIES, SHAPES
from clipsteer.world.generate import WorldBatch
from clipsteer.world.masks import patch_masks

# Which patch mask a factor group lives in.
PATCH_REGION = {"shape": "object", "colour": "object", "background": "background", "word": "word"}


def image_factors(batch: WorldBatch) -> dict[str, np.ndarray]:
    """{factor: bool [N]}."""
    labels = {k: np.asarray(v) for k, v in batch.labels.items()}
    has_object = labels["shape"] >= 0
    out = {f"shape:{name}": labels["shape"] == i for i, name in enumerate(SHAPES)}
    out |= {f"colour:{name}": has_object & (labels["colour"] == i) for i, name in enumerate(COLOUR_NAMES)}
    out |= {f"background:{fam}": labels["family"] == i for i, fam in enumerate(FAMILIES)}
    out |= {f"word:{name}": labels["word"] == i for i, name in enumerate(SHAPES)}
    return out


def patch_factors(batch: WorldBatch) -> dict[str, np.ndarray]:
    """{factor: bool [N, G·G]} in the token order of the patch grid (row-major, per image)."""
    masks = {k: v.reshape(len(v), -1) for k, v in patch_masks(batch.patch_counts).items()}  # [N, P]
    return {name: masks[PATCH_REGION[name.split(":")[0]]] & positive[:, None]
            for name, positive in image_factors(batch).items()}
