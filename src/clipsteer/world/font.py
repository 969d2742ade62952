"""A built-in 5×7 capital bitmap font, so words render fast, identically on every machine, with exact masks.

`render_word(word, height, max_width)` → bool [height, width] ink mask, scaled by nearest neighbour.
"""

from __future__ import annotations

import functools

import numpy as np

GLYPH_ROWS, GLYPH_COLS, GAP = 7, 5, 1

_GLYPHS_TEXT = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "##.##", "#...#"),
}
GLYPHS: dict[str, np.ndarray] = {
    ch: np.array([[c == "#" for c in row] for row in rows], dtype=bool) for ch, rows in _GLYPHS_TEXT.items()
}
for _ch, _g in GLYPHS.items():
    assert _g.shape == (GLYPH_ROWS, GLYPH_COLS), f"glyph {_ch} has shape {_g.shape}"


@functools.cache
def word_bitmap(word: str) -> np.ndarray:
    """The word at native size: bool [7, 6·len − 1], capitals, one blank column between letters."""
    letters = word.upper()
    missing = sorted(set(letters) - set(GLYPHS))
    if missing:
        raise ValueError(f"the world font has no glyph for {missing} in {word!r}; it draws {''.join(sorted(GLYPHS))}")
    cols = [GLYPHS[ch] for ch in letters]
    gap = np.zeros((GLYPH_ROWS, GAP), dtype=bool)
    pieces = [p for g in cols for p in (g, gap)][:-1]
    return np.concatenate(pieces, axis=1)


def text_size(word: str, height: int, max_width: int) -> tuple[int, int]:
    """(height, width) of the rendered word: aspect kept unless it would exceed max_width (then squeezed)."""
    native = word_bitmap(word)
    width = min(max_width, round(native.shape[1] * height / GLYPH_ROWS))
    return height, max(width, native.shape[1] // 2)


@functools.lru_cache(maxsize=4096)
def render_word(word: str, height: int, max_width: int) -> np.ndarray:
    """Ink mask bool [height, width] of `word` scaled by nearest neighbour (see `text_size`)."""
    native = word_bitmap(word)
    h, w = text_size(word, height, max_width)
    rows = (np.arange(h) * GLYPH_ROWS) // h
    cols = (np.arange(w) * native.shape[1]) // w
    out = native[rows][:, cols]
    out.setflags(write=False)
    return out
