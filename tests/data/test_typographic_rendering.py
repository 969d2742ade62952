"""Rendered typographic attacks: seeded, aligned variants, and a mask that covers exactly the written word."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import LABEL, TEXT, text_mask
from clipsteer.data.typographic import AttackStyle, RenderedAttacks, render_attack, square_crop
from labelled_fixtures import write_waterbirds


def photo(seed: int = 0, size: tuple[int, int] = (90, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(60, 200, (size[1], size[0], 3), dtype=np.uint8))


def test_same_seed_same_image_other_seed_other_image() -> None:
    a1, _, m1 = render_attack(photo(), "waterbird", np.random.default_rng(7), 64)
    a2, _, m2 = render_attack(photo(), "waterbird", np.random.default_rng(7), 64)
    a3, _, m3 = render_attack(photo(), "waterbird", np.random.default_rng(8), 64)
    assert np.array_equal(np.asarray(a1), np.asarray(a2)) and np.array_equal(m1, m2)
    assert not np.array_equal(m1, m3)


@pytest.mark.parametrize("seed", range(6))
def test_mask_covers_the_text_and_nothing_else(seed: int) -> None:
    """Without a note, the pixels that changed are exactly inside the mask, and the mask's pixels
    (ink or stroke) differ from the clean crop wherever the text colour differs from the photo."""
    clean = square_crop(photo(seed), 64)
    attacked, blank, mask = render_attack(photo(seed), "cat", np.random.default_rng(seed), 64, AttackStyle(p_note=0.0))
    changed = (np.asarray(attacked).astype(int) - np.asarray(clean).astype(int)).any(axis=-1)
    assert mask.shape == (64, 64) and mask.any()
    assert not (changed & ~mask).any(), "pixels outside the mask changed"
    assert changed[mask].mean() > 0.95  # the photo is mid-grey noise; text colours are saturated
    assert np.array_equal(np.asarray(blank), np.asarray(clean))  # no note: blank = clean


def test_note_is_in_attacked_and_blank_but_word_only_in_attacked() -> None:
    attacked, blank, mask = render_attack(photo(), "dog", np.random.default_rng(1), 64, AttackStyle(p_note=1.0))
    clean = np.asarray(square_crop(photo(), 64)).astype(int)
    note = (np.asarray(blank).astype(int) != clean).any(axis=-1)
    assert note[mask].all(), "the note lies under the word"
    assert not np.array_equal(np.asarray(attacked), np.asarray(blank))
    word_only = (np.asarray(attacked).astype(int) != np.asarray(blank).astype(int)).any(axis=-1)
    assert not (word_only & ~mask).any()


def test_rendered_dataset_writes_a_wrong_class_word_with_aligned_variants(tmp_path: Path) -> None:
    base = open_labelled(f"waterbirds:{write_waterbirds(tmp_path / 'wb')}", "val")
    attacked = RenderedAttacks(base, size=32, variant="attacked", seed=3)
    clean = RenderedAttacks(base, size=32, variant="clean", seed=3)
    labels = attacked.labels()
    assert (labels[TEXT] != labels[LABEL]).all() and np.array_equal(labels[LABEL], base.labels()[LABEL])
    assert attacked.label_names()[TEXT] == ("landbird", "waterbird")
    assert attacked.load(2).size == clean.load(2).size == (32, 32)
    assert np.array_equal(np.asarray(attacked.load(2)), np.asarray(attacked.load(2)))
    assert text_mask(attacked, 2).any() and not text_mask(clean, 2).any()
    assert attacked.fingerprint() != clean.fingerprint()
