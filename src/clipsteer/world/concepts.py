"""The world's concept vocabulary (what its captions can say) and the factor labels those concepts name.

Steerability reads CLIP's output over a vocabulary of concepts. For the toy CLIP the right vocabulary
is not its ~35 tokenizer words but the phrases its captions use: "a red star", "a star on the water",
"the word cross", "a big heart", "a red star on the water". `phrase_vocabulary()` generates them from
the caption grammar (`clipsteer.world.captions`) and the factor sets (`clipsteer.world.factors`), never
by hand — the short phrases the grammar writes about one thing (416 on the current world; the
calibration notes' "~436 caption phrases"):

- one phrase per distinct combination of at most `max_factors` (3) factor values that a caption can
  mention together, spelled with the grammar's first template (no "a photo of" prefix: it names no
  factor): an object's [size] [colour] shape [on the family], and the text-only captions' written word
  [on the family];
- without the written-word clause on objects ("a star with the word cross") unless `object_words`:
  that clause joins a second thing to the phrase, and such conjunctions (with 4–5-factor phrases)
  multiply near-duplicate concepts, which at the toy's temperature spread the readout's mass thinly.
  The vocabulary size matters to the metric: on the shipped toy, at the last block, random directions
  are 24 % steerable over the 192 phrases of `phrase_vocabulary(2, object_words=True)` and 3 % over
  these 416 (the calibration notes, and the issue-10 closing note).
- each phrase carries the factor names it mentions (`shape:star`, `colour:red`, `size:big`,
  `background:water`, `word:cross`), the names `concept_labels` gives binary image labels for, so a
  steered feature's top concept can be checked against the factors the feature detects.
"""

from __future__ import annotations

import itertools

import numpy as np

from clipsteer.world.captions import TEXT_ONLY_TEMPLATES, object_phrase, on_background, with_word
from clipsteer.world.factor_labels import image_factors
from clipsteer.world.factors import COLOUR_NAMES, FAMILIES, SHAPES, SIZES
from clipsteer.world.generate import WorldBatch

DEFAULT_MAX_FACTORS = 3
Concept = tuple[str, frozenset[str]]  # (phrase, factor names it mentions)


def _object_concepts() -> list[Concept]:
    """Every object caption core: [size] [colour] shape [on the family] [with the word W]."""
    out = []
    for size, colour, shape, family, word in itertools.product(
            (None, *SIZES), (None, *COLOUR_NAMES), SHAPES, (None, *FAMILIES), (None, *SHAPES)):
        words = [w for w in (size, colour, shape) if w is not None]
        text = object_phrase(words)
        factors = {f"shape:{shape}"} | ({f"size:{size}"} if size else set()) | ({f"colour:{colour}"} if colour else set())
        if family is not None:
            text = on_background(text, family)
            factors.add(f"background:{family}")
        if word is not None:
            text = with_word(text, word)
            factors.add(f"word:{word}")
        out.append((text, frozenset(factors)))
    return out


def _text_only_concepts() -> list[Concept]:
    """Text-only captions: "the word W" and "text that says W on the family" (first spellings)."""
    word_only, word_on_background = TEXT_ONLY_TEMPLATES[0], TEXT_ONLY_TEMPLATES[2]
    out = [(word_only.format(word=w), frozenset({f"word:{w}"})) for w in SHAPES]
    out += [(word_on_background.format(word=w, family=f), frozenset({f"word:{w}", f"background:{f}"}))
            for w in SHAPES for f in FAMILIES]
    return out


def phrase_vocabulary(max_factors: int = DEFAULT_MAX_FACTORS, object_words: bool = False) -> list[Concept]:
    """Caption phrases naming 1..max_factors factor values, one spelling per factor combination; objects
    carry the written-word clause only with `object_words`."""
    if max_factors < 1:
        raise ValueError(f"max_factors must be at least 1, got {max_factors}")
    chosen: dict[frozenset[str], str] = {}
    for text, factors in _object_concepts() + _text_only_concepts():
        is_object = any(f.startswith("shape:") for f in factors)
        if is_object and not object_words and any(f.startswith("word:") for f in factors):
            continue
        if len(factors) <= max_factors:
            chosen.setdefault(factors, text)  # the first spelling of each combination
    concepts = [(text, factors) for factors, text in chosen.items()]
    assert len({t for t, _ in concepts}) == len(concepts), "two factor combinations share a phrase"
    return concepts


def concept_labels(batch: WorldBatch) -> dict[str, np.ndarray]:
    """{factor name: bool [N]} for every name a phrase can mention: the world's image factors
    (`factor_labels.image_factors`) plus the object's size (`size:small`, `size:big`)."""
    size, shape = np.asarray(batch.labels["size"]), np.asarray(batch.labels["shape"])
    return image_factors(batch) | {f"size:{name}": (shape >= 0) & (size == i) for i, name in enumerate(SIZES)}
