"""A `Scene` is one image's complete ground truth; `draw_scene` fills in geometry for chosen factors.

Categorical factors (shape, colour, background, word, note) are chosen by the caller: the pretraining
distribution (`clipsteer.world.distribution`) or an evaluation set (`clipsteer.world.evalsets`).
`draw_scene` then draws the continuous ones (size, position, rotation, colour jitter, font size and
colour, where the word goes). Layout rule: a word sits in a band at the top or bottom of the image and
the object is placed mostly clear of it, so that a written word reads as a label rather than an occluder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from clipsteer.world.config import WorldConfig
from clipsteer.world.factors import BACKGROUNDS, COLOURS, SHAPES
from clipsteer.world.font import text_size

NOTE_COLOURS = ((250, 238, 140), (246, 244, 232), (255, 214, 228))  # light sticky-note paper
NOTE_INK = ((15, 15, 15), (25, 35, 120), (150, 20, 20))
PLAIN_INK = ((250, 250, 250), (12, 12, 12))
NOTE_PAD = 2


@dataclass(frozen=True)
class Text:
    """A written word (and its optional note); `ink=False` keeps the note but draws no letters (blank control)."""

    word: str
    height: int
    x: int  # top-left of the ink box
    y: int
    ink_colour: tuple[int, int, int]
    note: bool
    note_colour: tuple[int, int, int]
    ink: bool = True

    def box(self, max_width: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the ink box, exclusive end."""
        h, w = text_size(self.word, self.height, max_width)
        return self.x, self.y, self.x + w, self.y + h

    def note_box(self, max_width: int) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = self.box(max_width)
        return x0 - NOTE_PAD, y0 - NOTE_PAD, x1 + NOTE_PAD, y1 + NOTE_PAD


@dataclass(frozen=True)
class Scene:
    background: str
    shape: str | None  # None: a text-only image
    colour: str | None
    rgb: tuple[int, int, int] | None  # the object's jittered colour
    radius: float
    cx: float
    cy: float
    rotation: float
    text: Text | None
    seed_key: tuple[int, ...]  # the RNG key the scene (and its background texture) were drawn from

    def __post_init__(self) -> None:
        assert self.background in BACKGROUNDS, self.background
        assert (self.shape is None) == (self.colour is None) == (self.rgb is None)
        assert self.shape is None or self.shape in SHAPES
        assert self.shape is not None or self.text is not None, "a scene needs an object or a word"

    @property
    def word(self) -> str | None:
        """The word whose letters are drawn (None without text or for a blank note)."""
        return self.text.word if self.text is not None and self.text.ink else None

    def without_text(self) -> Scene:
        return replace(self, text=None)

    def blank(self) -> Scene:
        """The same scene with the note but no letters (the occlusion control)."""
        assert self.text is not None and self.text.note, "blank() needs a scene with a note"
        return replace(self, text=replace(self.text, ink=False))

    def with_word(self, word: str) -> Scene:
        """The same placement with another word (the box is re-measured for the new word's length)."""
        assert self.text is not None
        return replace(self, text=replace(self.text, word=word))


def _pick(rng: np.random.Generator, options: tuple) -> object:
    return options[int(rng.integers(len(options)))]


def draw_scene(rng: np.random.Generator, world_config: WorldConfig, *, key: tuple[int, ...], background: str,
               shape: str | None, colour: str | None, word: str | None, note: bool) -> Scene:
    """Draw the continuous factors for the given categorical ones."""
    size = world_config.image_size
    text = None
    band: tuple[float, float] = (0.0, float(size))  # rows the object centre may use
    radius = float(rng.uniform(world_config.radius_min, world_config.radius_max))
    if word is not None:
        height = int(rng.integers(world_config.font_height_min, world_config.font_height_max + 1))
        h, w = text_size(word, height, world_config.max_text_width)
        pad = NOTE_PAD + 1
        x = int(rng.integers(pad, size - w - pad + 1))
        top = bool(rng.random() < 0.5)
        if shape is None:
            y = int(rng.integers(pad, size - h - pad + 1))
        elif top:
            y = int(rng.integers(pad, pad + 3))
            band = (y + h + NOTE_PAD + 0.5 * radius, size - 0.85 * radius)
        else:
            y = int(size - h - rng.integers(pad, pad + 3))
            band = (0.85 * radius, y - NOTE_PAD - 0.5 * radius)
        ink = _pick(rng, NOTE_INK if note else PLAIN_INK)
        text = Text(word=word, height=height, x=x, y=y, ink_colour=ink, note=note,  # type: ignore[arg-type]
                    note_colour=_pick(rng, NOTE_COLOURS))  # type: ignore[arg-type]
    rgb = None
    cx = cy = rotation = 0.0
    if shape is not None:
        assert colour is not None
        margin = 0.85 * radius
        cx = float(rng.uniform(margin, size - margin))
        lo, hi = band if word is not None else (margin, size - margin)
        if hi < lo:
            lo = hi = (lo + hi) / 2
        cy = float(rng.uniform(lo, hi))
        rotation = float(rng.uniform(-world_config.max_rotation, world_config.max_rotation))
        base = np.array(COLOURS[colour])
        jitter = rng.integers(-world_config.colour_jitter, world_config.colour_jitter + 1, 3)
        rgb = tuple(int(c) for c in np.clip(base + jitter, 0, 255))
    else:
        radius = 0.0
    return Scene(background=background, shape=shape, colour=colour, rgb=rgb, radius=radius, cx=cx, cy=cy,  # type: ignore[arg-type]
                 rotation=rotation, text=text, seed_key=key)
