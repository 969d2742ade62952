"""Shape silhouettes as implicit inside-tests in the shape's own unit frame (radius ≈ 1, y up).

`shape_mask(name, size, cx, cy, radius, rotation_deg)` → bool [size, size], True where the object is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from clipsteer.world.factors import SHAPES

Inside = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polygon(vertices: list[tuple[float, float]]) -> Inside:
    """Even-odd rule over the polygon's edges, vectorised over points."""
    vs = np.asarray(vertices, dtype=np.float32)
    x1, y1 = vs[:, 0], vs[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        result = np.zeros(u.shape, dtype=bool)
        for a, b, c, d in zip(x1, y1, x2, y2, strict=True):
            if b == d:
                continue
            crosses = (b > v) != (d > v)
            x_at = a + (v - b) * ((c - a) / (d - b))
            result ^= crosses & (u < x_at)
        return result

    return inside


def _regular(n: int, radius: float, start_deg: float = 90.0) -> list[tuple[float, float]]:
    angles = np.deg2rad(start_deg + 360.0 * np.arange(n) / n)
    return [(radius * np.cos(a), radius * np.sin(a)) for a in angles]


def _star(points: int = 5, outer: float = 1.15, inner: float = 0.5) -> list[tuple[float, float]]:
    angles = np.deg2rad(90.0 + 180.0 * np.arange(2 * points) / points)
    radii = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
    return [(r * np.cos(a), r * np.sin(a)) for r, a in zip(radii, angles, strict=True)]


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.82) & (np.abs(v) <= 0.82)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.32) & (av <= 1.0)) | ((av <= 0.32) & (au <= 1.0))


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y = u * 1.15, v * 1.15 + 0.2
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


def _moon(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 1.0) & ((u - 0.5) ** 2 + (v - 0.25) ** 2 > 0.72**2)


_arrow = _polygon([(-1.0, 0.25), (0.1, 0.25), (0.1, 0.7), (1.05, 0.0), (0.1, -0.7), (0.1, -0.25), (-1.0, -0.25)])

INSIDE: dict[str, Inside] = {
    "circle": _circle,
    "square": _square,
    "triangle": _polygon(_regular(3, 1.12, start_deg=90.0)),
    "star": _polygon(_star()),
    "cross": _cross,
    "heart": _heart,
    "moon": _moon,
    "arrow": _arrow,
}
assert tuple(INSIDE) == SHAPES, "every shape needs exactly one silhouette, in SHAPES order"


@functools.lru_cache(maxsize=4)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return xs, ys


def shape_mask(name: str, size: int, cx: float, cy: float, radius: float, rotation_deg: float) -> np.ndarray:
    """bool [size, size]: pixels whose centre is inside the shape (image y points down)."""
    if name not in INSIDE:
        raise ValueError(f"unknown shape {name!r}; the world's shapes are {SHAPES}")
    xs, ys = _pixel_centres(size)
    # Only the bounding square of the shape needs testing.
    reach = 1.25 * radius
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
    mask = np.zeros((size, size), dtype=bool)
    if x0 >= x1 or y0 >= y1:
        return mask
    dx = (xs[y0:y1, x0:x1] - cx) / radius
    dy = (cy - ys[y0:y1, x0:x1]) / radius  # y up in the shape frame
    t = np.deg2rad(rotation_deg)
    cos, sin = np.float32(np.cos(t)), np.float32(np.sin(t))
    u = cos * dx + sin * dy  # rotate the point by −t = rotate the shape by +t (counter-clockwise)
    v = -sin * dx + cos * dy
    mask[y0:y1, x0:x1] = INSIDE[name](u, v)
    return mask
