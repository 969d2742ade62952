"""Per-patch masks of world images from their rendered layer counts (no torch here)."""

from __future__ import annotations

import numpy as np

MASK_KINDS: tuple[str, ...] = ("object", "word", "note", "background")


def patch_masks(counts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-patch bool masks [N, G, G] from layer counts [N, 4, G, G] (layers background/object/note/word):
    object / word / note: the patch shows at least one pixel of it; background: the patch shows nothing else."""
    assert counts.ndim == 4 and counts.shape[1] == 4, f"expected counts [N, 4, G, G], got {counts.shape}"
    background, obj, note, word = (counts[:, k] for k in range(4))
    return {"object": obj > 0, "word": word > 0, "note": note > 0,
            "background": (obj == 0) & (note == 0) & (word == 0)}
