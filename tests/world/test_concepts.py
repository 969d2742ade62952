import numpy as np

from clipsteer.data.protocol import Captioned, ConceptAnnotated
from clipsteer.data.resolve import open_dataset
from clipsteer.world.captions import caption
from clipsteer.world.concepts import phrase_vocabulary
from clipsteer.world.config import WorldConfig


def test_phrase_vocabulary_is_generated_from_the_grammar_one_phrase_per_factor_combination() -> None:
    vocab = phrase_vocabulary()
    phrases = [p for p, _ in vocab]
    # objects: shape with up to two of size (2) / colour (8) / background (2): 8·(1 + 12 + 36) = 392;
    # text-only: the word (8), the word on a background (16)
    assert len(set(phrases)) == len(phrases) == 416
    assert len({f for _, f in vocab}) == len(vocab)
    named = dict(vocab)
    assert named["a red star"] == {"colour:red", "shape:star"}
    assert named["a red star on the water"] == {"colour:red", "shape:star", "background:water"}
    assert named["the word cross"] == {"word:cross"}
    assert named["text that says cross on the land"] == {"word:cross", "background:land"}
    assert named["a big heart"] == {"size:big", "shape:heart"}
    assert "a star with the word cross" not in named  # the object's word clause joins a second thing
    assert all(1 <= len(f) <= 3 for _, f in vocab)
    assert len(phrase_vocabulary(max_factors=1)) == 16  # the shapes and the written words
    with_words = dict(phrase_vocabulary(max_factors=2, object_words=True))
    assert len(with_words) == 192 and with_words["a star with the word cross"] == {"shape:star", "word:cross"}


def test_world_datasets_serve_concepts_labels_and_captions_through_the_protocols() -> None:
    dataset = open_dataset("world:pretraining/test:40")
    assert isinstance(dataset, ConceptAnnotated) and isinstance(dataset, Captioned)
    names = {name for _, factors in dataset.concept_vocabulary() for name in factors}
    labels = dataset.concept_labels(0, 40)
    assert names <= set(labels) and all(v.shape == (40,) and v.dtype == bool for v in labels.values())
    batch = dataset.arrays(0, 40)
    shape, size = np.asarray(batch.labels["shape"]), np.asarray(batch.labels["size"])
    assert (labels["size:big"] == ((shape >= 0) & (size == 1))).all()
    assert dataset.captions(0, 3) == list(batch.captions[:3])
    world = WorldConfig()
    for i in range(40):  # the grammar, now built from object_phrase / on_background / with_word, writes the same captions
        text, _ = caption(dataset.scene(i), world)
        assert text == batch.captions[i]
