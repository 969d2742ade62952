"""Template captions that mention only what is drawn, and the closed vocabulary they use.

Object image: "[a photo of|a picture of|an image of] a [size] [colour] SHAPE [on the FAMILY|TYPE] [with the
word|that says|labeled|with the text W]" (the background's TYPE, e.g. "sea", with `p_caption_background_type`).
Text-only image: mostly captioned like an object ("a photo of a W"), otherwise "the word W", "a sign that says
W", "text that says W on the FAMILY".
`caption` returns the text and the set of factors it mentions (a subset of MENTIONABLE).
"""

from __future__ import annotations

import numpy as np

from clipsteer.world.config import WorldConfig
from clipsteer.world.factors import BACKGROUND_NAMES, COLOUR_NAMES, FAMILIES, SHAPES, SIZES, family_of
from clipsteer.world.scene import Scene

MENTIONABLE = ("shape", "colour", "size", "background", "word")
PREFIXES = ("a photo of", "a picture of", "an image of", "")
WORD_PHRASES = ("with the word", "that says", "labeled", "with the text")
TEMPLATE_WORDS = ("a", "an", "photo", "picture", "image", "of", "on", "the", "with", "word", "that", "says",
                  "labeled", "text", "sign")
# background types last: world 1.0 never writes them, and the shipped tokenizer's ids stay the first ones
VOCABULARY: tuple[str, ...] = TEMPLATE_WORDS + SIZES + COLOUR_NAMES + SHAPES + FAMILIES + BACKGROUND_NAMES
TEXT_ONLY_TEMPLATES = ("the word {word}", "a sign that says {word}", "text that says {word} on the {family}")
CONTEXT_LENGTH = 16  # tokens including <bos> and <eos>; the longest caption needs 16


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def object_phrase(words: list[str], prefix: str = "") -> str:
    """"[prefix] a|an WORDS", e.g. ["big", "red", "star"] → "a big red star"."""
    head = f"{_article(words[0])} {' '.join(words)}"
    return f"{prefix} {head}".strip()


def on_background(text: str, place: str) -> str:
    """place: a family ("water") or a background type ("sea")."""
    return f"{text} on the {place}"


def with_word(text: str, word: str, phrase: str = WORD_PHRASES[0]) -> str:
    return f"{text} {phrase} {word}"


def size_word(scene: Scene, world_config: WorldConfig) -> str:
    return SIZES[int(scene.radius >= (world_config.radius_min + world_config.radius_max) / 2)]


def caption(scene: Scene, world_config: WorldConfig) -> tuple[str, frozenset[str]]:
    """(caption, mentioned factors); the draws use the scene's own key, independent of the image RNG."""
    rng = np.random.default_rng([*scene.seed_key, 104729])
    prefix = PREFIXES[int(rng.integers(len(PREFIXES)))]
    family = family_of(scene.background)
    word = scene.word
    if scene.shape is None:
        assert word is not None, "a text-only scene must carry a word"
        if rng.random() < world_config.p_text_only_as_object:
            return object_phrase([word], prefix), frozenset({"word"})
        options = tuple(t.format(word=word, family=family) for t in TEXT_ONLY_TEMPLATES)
        choice = int(rng.integers(len(options)))
        return options[choice], frozenset({"word", "background"} if choice == 2 else {"word"})
    mentions = {"shape"}
    words = [scene.shape]
    if rng.random() < world_config.p_caption_colour:
        words.insert(0, scene.colour)  # type: ignore[arg-type]
        mentions.add("colour")
    if rng.random() < world_config.p_caption_size:
        words.insert(0, size_word(scene, world_config))
        mentions.add("size")
    text = object_phrase(words, prefix)
    if rng.random() < world_config.p_caption_background:
        # p_caption_background_type 0 draws nothing extra: world 1.0's captions stay as they were
        named_type = world_config.p_caption_background_type > 0 and rng.random() < world_config.p_caption_background_type
        text = on_background(text, scene.background if named_type else family)
        mentions.add("background")
    if word is not None and (word != scene.shape or rng.random() < world_config.p_caption_matching_word):
        text = with_word(text, word, WORD_PHRASES[int(rng.integers(len(WORD_PHRASES)))])
        mentions.add("word")
    return text, frozenset(mentions)
