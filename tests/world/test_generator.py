"""The world generator: determinism, labels/masks against pixels, captions against the drawn factors."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from clipsteer.world.captions import CONTEXT_LENGTH, VOCABULARY, caption
from clipsteer.world.config import WorldConfig
from clipsteer.world.dataset import WorldDataset, parse_spec
from clipsteer.world.distribution import pretraining_scene
from clipsteer.world.factors import BACKGROUNDS, COLOUR_NAMES, FAMILIES, HABITATS, SHAPES, SIZES, family_of
from clipsteer.world.font import render_word
from clipsteer.world.generate import render_indices
from clipsteer.world.masks import patch_masks
from clipsteer.world.render import NOTE, OBJECT, WORD, patch_counts, render
from clipsteer.world.shapes import shape_mask

CFG = WorldConfig()
N = 160


@pytest.fixture(scope="module")
def scenes():
    return [pretraining_scene(3, i, CFG) for i in range(N)]


def test_generator_is_deterministic_per_seed():
    a = render_indices(lambda i: pretraining_scene(5, i, CFG), range(40), CFG)
    b = render_indices(lambda i: pretraining_scene(5, i, CFG), range(40), CFG)
    c = render_indices(lambda i: pretraining_scene(6, i, CFG), range(40), CFG)
    assert np.array_equal(a.images, b.images) and a.captions == b.captions
    assert all(np.array_equal(a.labels[k], b.labels[k]) for k in a.labels)
    assert not np.array_equal(a.images, c.images)
    # random access: image 17 alone is image 17 of the batch
    single = render_indices(lambda i: pretraining_scene(5, i, CFG), [17], CFG)
    assert np.array_equal(single.images[0], a.images[17])


def test_pretraining_mix_has_every_kind_of_image(scenes):
    assert any(s.shape is None for s in scenes), "text-only images"
    assert any(s.shape is not None and s.word is None for s in scenes)
    assert any(s.word is not None and s.word == s.shape for s in scenes), "words that name the object"
    assert any(s.text is not None and s.text.note for s in scenes) and any(s.text and not s.text.note for s in scenes)
    assert len({s.shape for s in scenes if s.shape}) == len(SHAPES)


def test_object_pixels_and_mask_agree(scenes):
    for s in scenes[:60]:
        if s.shape is None:
            continue
        image, layers = render(s.without_text(), CFG)
        silhouette = shape_mask(s.shape, CFG.image_size, s.cx, s.cy, s.radius, s.rotation)
        assert np.array_equal(layers == OBJECT, silhouette)
        assert (image[silhouette] == np.array(s.rgb, dtype=np.uint8)).all(), "object pixels have its colour"
        assert silhouette.sum() > 0.5 * np.pi * s.radius**2 * 0.4, "the object is mostly on the image"


def test_word_mask_covers_the_rendered_text(scenes):
    checked = 0
    for s in scenes:
        if s.word is None:
            continue
        with_word, layers = render(s, CFG)
        word_layer = layers == WORD
        assert word_layer.sum() > 0
        assert (with_word[word_layer] == np.array(s.text.ink_colour, np.uint8)).all()
        if s.shape is not None:  # every pixel the text touched is word ink or note paper
            without, _ = render(s.without_text(), CFG)
            changed = (with_word != without).any(-1)  # [S, S]
            assert (layers[changed] >= NOTE).all()
        # the ink is exactly the font's ink at the recorded box
        x0, y0, x1, y1 = s.text.box(CFG.max_text_width)
        assert np.array_equal(word_layer[y0:y1, x0:x1], render_word(s.word, s.text.height, CFG.max_text_width))
        masks = patch_masks(patch_counts(layers[None], CFG.patch_size))
        p = CFG.patch_size
        ink_patches = word_layer.reshape(CFG.grid, p, CFG.grid, p).any(axis=(1, 3))
        assert np.array_equal(masks["word"][0], ink_patches)
        assert not (masks["background"][0] & ink_patches).any()
        checked += 1
    assert checked > 10


def test_patch_counts_partition_each_patch(scenes):
    ds = WorldDataset("pretraining", "val", n=32)
    batch = ds.arrays()
    assert batch.patch_counts.shape == (32, 4, CFG.grid, CFG.grid)
    assert (batch.patch_counts.sum(1) == CFG.patch_size**2).all()
    masks = ds.masks(batch)
    assert set(masks) == {"object", "word", "note", "background"}
    assert all(m.shape == (32, CFG.grid, CFG.grid) and m.dtype == bool for m in masks.values())
    has_object = batch.labels["shape"] >= 0
    assert (masks["object"][has_object].any(axis=(1, 2))).all()
    assert not masks["object"][~has_object].any()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text)


def test_captions_mention_exactly_the_drawn_factors(scenes):
    for s in scenes:
        text, mentioned = caption(s, CFG)
        words = _words(text)
        assert set(words) <= set(VOCABULARY), text
        assert len(words) + 2 <= CONTEXT_LENGTH, text
        shapes_named = [w for w in words if w in SHAPES]
        colours_named = [w for w in words if w in COLOUR_NAMES]
        families_named = [w for w in words if w in FAMILIES]
        sizes_named = [w for w in words if w in SIZES]
        drawn = {s.shape, s.word} - {None}
        assert set(shapes_named) <= drawn, (text, drawn)
        assert ("shape" in mentioned) == (s.shape is not None and s.shape in shapes_named)
        assert colours_named == ([s.colour] if "colour" in mentioned else []), text
        assert families_named == ([family_of(s.background)] if "background" in mentioned else []), text
        assert len(sizes_named) == ("size" in mentioned), text
        if s.word is None:
            assert "word" not in mentioned and not {"says", "labeled", "word", "text"} & set(words), text
        if s.word is not None and s.word != s.shape:
            assert "word" in mentioned and s.word in shapes_named, "a wrong word is always mentioned"
        if s.shape is None:
            assert "shape" not in mentioned and "colour" not in mentioned


def test_caption_draws_do_not_change_images():
    cfg2 = dataclasses.replace(CFG, p_caption_colour=0.0, p_caption_background=1.0)
    a = render_indices(lambda i: pretraining_scene(1, i, CFG), range(16), CFG)
    b = render_indices(lambda i: pretraining_scene(1, i, cfg2), range(16), cfg2)
    assert np.array_equal(a.images, b.images) and a.captions != b.captions


def test_habitats_place_each_task_shape_on_its_own_background_type():
    """habitat_strength h: a WATER/LAND shape on its own family is on its habitat with P = h + (1 − h)/2."""
    cfg = dataclasses.replace(CFG, habitat_strength=0.8, p_caption_background_type=1.0, p_caption_background=1.0)
    scenes = [pretraining_scene(2, i, cfg) for i in range(3000)]
    for shape, habitat in HABITATS.items():
        own_family = [s.background for s in scenes if s.shape == shape and family_of(s.background) == BACKGROUNDS[habitat]]
        assert len(own_family) > 200
        assert abs(np.mean([b == habitat for b in own_family]) - 0.9) < 0.05, shape
    others = [s.background for s in scenes if s.shape in ("circle", "heart")]
    assert abs(np.mean([b == "sea" for b in others]) - 0.25) < 0.05, "shapes without a habitat stay uniform"
    for s in scenes[:200]:
        text, _ = caption(s, cfg)
        if s.shape is not None:  # every object caption names the background, here by its type
            assert set(_words(text)) <= set(VOCABULARY) and text.split(" on the ")[1].split()[0] == s.background, text


def test_world_config_rejects_bad_values():
    with pytest.raises(ValueError, match="probability"):
        WorldConfig(p_text=1.5)
    with pytest.raises(ValueError, match="multiple"):
        WorldConfig(patch_size=7)


def test_dataset_protocol_and_specs():
    from clipsteer.data import ImageDataset, open_dataset

    ds = open_dataset("world:typographic/val/blank:12")
    assert isinstance(ds, ImageDataset) and len(ds) == 12
    img = ds.load(4)
    assert img.mode == "RGB" and img.size == (CFG.image_size, CFG.image_size)
    assert np.array_equal(np.asarray(img), ds.arrays().images[4])
    assert ds.fingerprint() != parse_spec("typographic/val/attacked:12").fingerprint()
    assert parse_spec("val").task == "pretraining" and len(parse_spec("background/test")) == 2000
    with pytest.raises(ValueError, match="variants"):
        parse_spec("background/test/attacked")
    with pytest.raises(IndexError):
        ds.load(12)
