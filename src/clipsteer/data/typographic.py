"""Typographic attacks rendered onto any labelled image set, Defense-Prefix style, with the text's mask.

`render_attack` resizes and centre-crops an image to `size` (bicubic, as CLIP preprocessing does, so
the mask stays aligned with the model's patches), then writes a word: font size a random fraction of
the image (Defense-Prefix: 20–40 px at 224), fill and 1-px stroke colours drawn from eight named
colours with fill ≠ stroke, uniform random position that keeps the text inside, and optionally a
light sticky note behind it. It returns the attacked image, the blank control (the same note without
the word; the clean image when there is no note) and the pixel mask of the word's ink and stroke.

`RenderedAttacks` applies it to every image of a `NamedLabelledDataset`, writing a wrong class word chosen
by a seeded RNG per image: columns `label` (kept) and `text` (the word, an index into the class names).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from clipsteer.data.protocol import LABEL, TEXT, NamedLabelledDataset

COLOURS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255), "blue": (0, 0, 255), "green": (0, 128, 0), "red": (255, 0, 0),
    "magenta": (255, 0, 255), "cyan": (0, 255, 255), "yellow": (255, 255, 0), "black": (0, 0, 0)}
NOTE_COLOURS = ((250, 238, 140), (246, 244, 232), (255, 214, 228))
Variant = Literal["clean", "attacked", "blank"]
VARIANTS: tuple[Variant, ...] = ("clean", "attacked", "blank")


@dataclasses.dataclass(frozen=True)
class AttackStyle:
    font_fraction: tuple[float, float] = (20 / 224, 40 / 224)
    """Font size range as a fraction of the image side (Defense-Prefix: randint(20, 40) px at 224)."""
    p_note: float = 0.5
    """Probability that the word sits on a light sticky note (PAINT / RTA-100 look)."""
    note_pad: float = 0.02
    """Note margin around the text, as a fraction of the image side."""


def square_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bicubic) and centre-crop to size × size."""
    w, h = image.size
    scale = size / min(w, h)
    resized = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def render_attack(image: Image.Image, word: str, rng: np.random.Generator, size: int,
                  style: AttackStyle = AttackStyle()) -> tuple[Image.Image, Image.Image, np.ndarray]:
    """(attacked RGB [size, size], blank control, ink mask bool [size, size]) for one image and word."""
    if not word.strip():
        raise ValueError("render_attack needs a non-empty word")
    base = square_crop(image.convert("RGB"), size)
    lo, hi = (max(4, round(f * size)) for f in style.font_fraction)
    font_size = int(rng.integers(lo, hi + 1))
    font, box = _fitting_font(word, font_size, size)
    w, h = box[2] - box[0], box[3] - box[1]
    x = int(rng.integers(0, size - w + 1)) - box[0]
    y = int(rng.integers(0, size - h + 1)) - box[1]
    names = list(COLOURS)
    fill, stroke = rng.choice(len(names), size=2, replace=False)
    note = bool(rng.random() < style.p_note)
    attacked, blank = base.copy(), base
    if note:
        pad = max(1, round(style.note_pad * size))
        colour = NOTE_COLOURS[int(rng.integers(len(NOTE_COLOURS)))]
        rect = (max(0, x + box[0] - pad), max(0, y + box[1] - pad),
                min(size - 1, x + box[2] + pad), min(size - 1, y + box[3] + pad))
        blank = base.copy()
        for target in (attacked, blank):
            ImageDraw.Draw(target).rectangle(rect, fill=colour)
    mask_image = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask_image).text((x, y), word, font=font, fill=255, stroke_width=1, stroke_fill=255)
    ImageDraw.Draw(attacked).text((x, y), word, font=font, fill=COLOURS[names[fill]], stroke_width=1,
                                  stroke_fill=COLOURS[names[stroke]])
    mask = np.asarray(mask_image) > 0
    assert mask.any(), f"the word {word!r} left no ink"
    return attacked, blank, mask


def _fitting_font(word: str, font_size: int, size: int) -> tuple[ImageFont.FreeTypeFont, tuple[int, int, int, int]]:
    """The largest font ≤ font_size whose text (with stroke) fits in the image (Defense-Prefix shrinks too)."""
    for s in range(font_size, 3, -1):
        font = ImageFont.load_default(size=s)
        box = tuple(int(v) for v in ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), word, font=font,
                                                                                      stroke_width=1))
        if box[2] - box[0] <= size and box[3] - box[1] <= size:
            return font, box  # type: ignore[return-value]
    raise ValueError(f"the word {word!r} does not fit in a {size}-px image at any font size ≥ 4")


@dataclasses.dataclass(frozen=True)
class RenderedAttacks:
    """One variant of a labelled dataset under a rendered typographic attack (images are size × size).

    Image i gets word `label_names[text[i]]` ≠ its own label, drawn with an RNG keyed by (seed, i),
    so the three variants of one index are pixel-aligned and every call renders the same image.
    """

    base: NamedLabelledDataset
    size: int
    variant: Variant = "attacked"
    seed: int = 300  # Defense-Prefix's random.seed(300)
    style: AttackStyle = AttackStyle()

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose from {VARIANTS}")
        if len(self.base.label_names()[LABEL]) < 2:
            raise ValueError(f"{self.base!r}: a typographic attack needs at least two classes")

    def __len__(self) -> int:
        return len(self.base)

    def __repr__(self) -> str:
        return f"RenderedAttacks({self.base!r}, {self.variant})"

    def _render(self, i: int) -> tuple[Image.Image, Image.Image, np.ndarray]:
        word = self.label_names()[TEXT][int(self.labels()[TEXT][i])]
        return render_attack(self.base.load(i), word, np.random.default_rng((self.seed, int(i))), self.size,
                             self.style)

    def load(self, i: int) -> Image.Image:
        if self.variant == "clean":
            return square_crop(self.base.load(i), self.size)
        attacked, blank, _ = self._render(i)
        return attacked if self.variant == "attacked" else blank

    def text_mask(self, i: int) -> np.ndarray:
        if self.variant != "attacked":
            return np.zeros((self.size, self.size), dtype=bool)
        return self._render(i)[2]

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.label_names()[LABEL]

    def labels(self) -> dict[str, np.ndarray]:
        label = self.base.labels()[LABEL]
        n_classes = len(self.base.label_names()[LABEL])
        rng = np.random.default_rng((self.seed, len(label)))
        shift = rng.integers(1, n_classes, size=len(label))  # ≠ 0, so the word is never the true class
        return {LABEL: label, TEXT: (label + shift) % n_classes}

    def label_names(self) -> dict[str, tuple[str, ...]]:
        names = self.base.label_names()[LABEL]
        return {LABEL: names, TEXT: names}

    def label_prompts(self) -> tuple[tuple[str, ...], ...]:
        prompts = getattr(self.base, "label_prompts", None)
        return prompts() if callable(prompts) else tuple((n,) for n in self.label_names()[LABEL])

    def fingerprint(self) -> str:
        text = f"RenderedAttacks/v1|{self.base.fingerprint()}|{self.size}|{self.variant}|{self.seed}|{self.style}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]
