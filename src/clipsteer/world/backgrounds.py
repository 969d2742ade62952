"""Background textures: two water types (sea: waves, pond: ripples) and two land types (grass, sand).

`render_background(name, size, rng)` → float32 [size, size, 3] in 0..255 (clipped later).
All textures are smooth at the scale of a shape so that the object's outline stays easy to see,
while each family has a distinct hue (blue vs green/brown) that a model picks up immediately.
"""

from __future__ import annotations

import functools

import numpy as np

from clipsteer.world.factors import BACKGROUND_NAMES


@functools.lru_cache(maxsize=8)
def _upsampler(size: int, cells: int) -> np.ndarray:
    """Bilinear interpolation matrix float32 [size, cells] from a coarse grid to pixels."""
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), lo] = 1 - frac
    m[np.arange(size), lo + 1] = frac
    return m


def smooth_field(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random field float32 [size, size] with values roughly in [-1, 1]."""
    up = _upsampler(size, cells)
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    return up @ grid @ up.T


@functools.lru_cache(maxsize=4)
def _coords(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _tint(base: np.ndarray, shade: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    colour = base + rng.uniform(-jitter, jitter, 3).astype(np.float32)
    return colour[None, None, :] * shade[:, :, None]


def _sea(size: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _coords(size)
    angle = rng.uniform(-0.5, 0.5)
    freq = rng.uniform(0.35, 0.6)
    waves = np.sin(freq * (np.sin(angle) * xs + np.cos(angle) * ys) + rng.uniform(0, 2 * np.pi))
    shade = 1.0 + 0.18 * waves + 0.12 * smooth_field(size, 4, rng)
    return _tint(np.array([40, 95, 190], np.float32), shade, 15, rng)


def _pond(size: int, rng: np.random.Generator) -> np.ndarray:
    xs, ys = _coords(size)
    cx, cy = rng.uniform(0, size, 2)
    dist = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    ripples = np.sin(rng.uniform(0.45, 0.7) * dist + rng.uniform(0, 2 * np.pi))
    shade = 1.0 + 0.15 * ripples + 0.12 * smooth_field(size, 4, rng)
    return _tint(np.array([30, 130, 170], np.float32), shade, 15, rng)


def _grass(size: int, rng: np.random.Generator) -> np.ndarray:
    blobs = smooth_field(size, 6, rng)
    shade = 1.0 + 0.22 * blobs
    base = np.array([70, 140, 50], np.float32)
    img = _tint(base, shade, 15, rng)
    img[..., 0] += 25 * np.maximum(blobs, 0)  # some brown patches
    return img


def _sand(size: int, rng: np.random.Generator) -> np.ndarray:
    shade = 1.0 + 0.12 * smooth_field(size, 5, rng)
    return _tint(np.array([175, 150, 95], np.float32), shade, 15, rng)


TEXTURES = {"sea": _sea, "pond": _pond, "grass": _grass, "sand": _sand}
assert tuple(TEXTURES) == BACKGROUND_NAMES


def render_background(name: str, size: int, rng: np.random.Generator, noise: float = 5.0) -> np.ndarray:
    """float32 [size, size, 3], before clipping to 0..255; pixel noise of std `noise` on top."""
    if name not in TEXTURES:
        raise ValueError(f"unknown background {name!r}; the world's backgrounds are {BACKGROUND_NAMES}")
    img = TEXTURES[name](size, rng)
    img += rng.normal(0.0, noise, (size, size, 1)).astype(np.float32)
    return img
