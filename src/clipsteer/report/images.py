"""Pictures for feature cards: square thumbnails and patch heat-map overlays (PIL only), and PNG bytes.

A patch map [grid, grid] is drawn over the image as the model saw it (centre-cropped square): each
patch is tinted by its activation relative to the map's maximum, so the brightest patch is where the
feature fires most on that image. Small images are enlarged with nearest-neighbour sampling, which
keeps the pixels of tiny synthetic images crisp.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

HEAT_COLOUR = np.array([255, 40, 0], dtype=np.float32)   # activation tint (red-orange)


def square_thumbnail(image: Image.Image, side: int) -> Image.Image:
    """Centre-crop to a square, then resize to side × side (nearest when enlarging, Lanczos when shrinking)."""
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    square = image.convert("RGB").crop((left, top, left + s, top + s))
    resample = Image.Resampling.NEAREST if side >= s else Image.Resampling.LANCZOS
    return square.resize((side, side), resample)


def heatmap_overlay(image: Image.Image, patch_map: np.ndarray, side: int, strength: float = 0.65) -> Image.Image:
    """The thumbnail with patch_map [grid, grid] (non-negative) blended in; dark where the map is zero."""
    if patch_map.ndim != 2 or patch_map.shape[0] != patch_map.shape[1]:
        raise ValueError(f"patch map must be square [grid, grid], got {patch_map.shape}")
    base = np.asarray(square_thumbnail(image, side), dtype=np.float32)  # [side, side, 3]
    peak = float(patch_map.max())
    weights = np.clip(patch_map / peak, 0.0, 1.0) if peak > 0 else np.zeros_like(patch_map)
    grid = patch_map.shape[0]
    # Nearest upsampling: one patch = one block of pixels, as the ViT cut the image.
    cells = np.floor(np.arange(side) * grid / side).astype(int)
    w = weights[cells][:, cells][..., None].astype(np.float32)  # [side, side, 1]
    lit = base * (0.45 + 0.55 * w)  # patches where the feature is silent fade back
    blended = lit * (1 - strength * w) + HEAT_COLOUR * (strength * w)
    return Image.fromarray(np.clip(blended, 0, 255).astype(np.uint8), mode="RGB")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

