import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from clipsteer.models.testing import TINY_WORDS, tiny_backbone
from clipsteer.steer.control import random_vision_like
from clipsteer.steer.dictionary import DirectionSet, LayerNormedDirections
from clipsteer.steer.steerability import SteeringRun, SteeringSpec, scores_from_delta
from clipsteer.steer.vocabulary import (
    ConceptVocabulary,
    read_vocabulary_file,
    text_embeddings,
    vocabulary_from_tokenizer,
    write_vocabulary_file,
)


@pytest.fixture(scope="module")
def backbone():
    """A tiny random CLIP with attention strengthened, so that patch edits reach the CLS token
    (at default init the random model barely mixes tokens, and patch steering would be vacuous)."""
    model = tiny_backbone(seed=0)
    with torch.no_grad():
        for block in model.blocks:
            attn = block.self_attn
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
                proj.weight.mul_(8.0)
    return model


@pytest.fixture(scope="module")
def setup(backbone):
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    text = backbone.encode_text(list(TINY_WORDS))
    weight = torch.randn(20, 32, generator=torch.Generator().manual_seed(1))
    return pixels, text, {"raw": DirectionSet(weight), "layer_normed": LayerNormedDirections(weight)}


def test_scores_on_a_hand_built_case() -> None:
    delta = torch.tensor([[0.3, -0.1, -0.2], [0.0, 0.05, -0.05]])
    s = scores_from_delta(torch.tensor([7, 9]), delta)
    torch.testing.assert_close(s.steerability, torch.tensor([0.09 + 0.01 + 0.04, 0.0025 + 0.0025]))
    torch.testing.assert_close(s.power, torch.tensor([0.3, 0.05]))
    assert s.top_concept.tolist() == [0, 1]
    assert s.steerable(0.10).tolist() == [True, False]


@pytest.mark.parametrize("site", ["blocks.2.resid_post", "blocks.2.mlp_out", "blocks.1.resid_post",
                                  "blocks.0.mlp_out", "blocks.1.resid_pre"])
@pytest.mark.parametrize("tokens", ["all", "patches"])
@pytest.mark.parametrize("units", ["raw", "layer_normed"])
def test_fast_engines_equal_the_plain_forward(backbone, setup, site: str, tokens: str, units: str) -> None:
    pixels, text, dictionaries = setup
    alpha = {"raw": 100.0, "layer_normed": 60.0}[units]  # both several times the token norm
    run = SteeringRun(backbone, site, dictionaries[units], pixels, text, SteeringSpec(alpha=alpha, tokens=tokens),
                      image_batch=4)
    features = [0, 3, 7, 11, 19]
    plain = run.scores(features, engine="plain", progress=False)
    if tokens == "patches" and site.startswith("blocks.2."):
        # At the last block only CLS reaches the embedding: a patch-only edit cannot steer at all.
        assert float(plain.steerability.max()) < 1e-12
    else:
        assert plain.steerability.max() > 1e-3, "the check needs edits that move the readout"
    engines = ["suffix", "closed_form"] if run.closed_form_available else ["suffix"]
    assert run.closed_form_available == (site in ("blocks.2.resid_post", "blocks.2.mlp_out"))
    for engine in engines:
        fast = run.scores(features, engine=engine, feature_batch=2, progress=False)
        torch.testing.assert_close(fast.steerability, plain.steerability, atol=1e-4, rtol=0)
        torch.testing.assert_close(fast.power, plain.power, atol=1e-4, rtol=0)
        moved = plain.power > 1e-6  # with Δ ≡ 0 every concept ties
        assert fast.top_concept[moved].tolist() == plain.top_concept[moved].tolist()


def test_attn_out_falls_back_to_plain(backbone, setup) -> None:
    pixels, text, dictionaries = setup
    run = SteeringRun(backbone, "blocks.1.attn_out", dictionaries["raw"], pixels, text)
    assert run.scores([0, 1], progress=False).steerability.shape == (2,)
    with pytest.raises(ValueError, match="cannot resume"):
        run.scores([0], engine="suffix")


def test_mismatched_dictionary_is_explained(backbone, setup) -> None:
    pixels, text, _ = setup
    with pytest.raises(ValueError, match="d_in = 16 but .* d_model = 32"):
        SteeringRun(backbone, "blocks.1.resid_post", DirectionSet.neurons(16), pixels, text)


def test_vocabulary_from_bpe_merges_in_order() -> None:
    vocab = {c: i for i, c in enumerate(["a", "b", "c", "t", "1", "t</w>", "b</w>", "ca", "cat</w>", "at</w>", "ab</w>", "1</w>"])}
    merges = [("c", "a"), ("a", "t</w>"), ("ca", "t</w>"), ("a", "b</w>")]
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe)
    assert vocabulary_from_tokenizer(tok) == ["at", "cat", "ab"]  # merge order; "ca" is not a whole word
    assert vocabulary_from_tokenizer(tok, size=2) == ["at", "cat"]


def test_vocabulary_from_word_level_tokenizer(backbone) -> None:
    words = vocabulary_from_tokenizer(backbone.tokenizer)
    assert words == [w for w in TINY_WORDS if len(w) >= 2]


def test_word_list_file(tmp_path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("# concepts\nwater\n\nland\nwater\nsky\n")
    assert read_vocabulary_file(path).concepts == ("water", "land", "sky")
    assert read_vocabulary_file(path, size=1).concepts == ("water",)
    assert read_vocabulary_file(path).factors is None
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        read_vocabulary_file(tmp_path / "missing.txt")


def test_vocabulary_file_with_factors_round_trips(tmp_path) -> None:
    vocab = ConceptVocabulary(("a red star", "the word cross"),
                              (frozenset({"colour:red", "shape:star"}), frozenset({"word:cross"})))
    write_vocabulary_file(vocab, tmp_path / "v.txt")
    back = read_vocabulary_file(tmp_path / "v.txt")
    assert back.concepts == vocab.concepts and back.factors == vocab.factors
    (tmp_path / "mixed.txt").write_text("a star\tshape:star\nthe sea\n")
    with pytest.raises(ValueError, match="for every concept or for none"):
        read_vocabulary_file(tmp_path / "mixed.txt")


def test_text_embeddings_cache(backbone, tmp_path) -> None:
    first = text_embeddings(backbone, ["cat", "dog"], cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1
    torch.testing.assert_close(text_embeddings(backbone, ["cat", "dog"], cache_dir=tmp_path), first)


def test_random_control_keeps_text_and_changes_vision(backbone) -> None:
    control = random_vision_like(backbone, seed=5)
    torch.testing.assert_close(control.encode_text(["cat"]), backbone.encode_text(["cat"]))
    pixels = torch.randn(1, 3, 32, 32)
    assert (control.encode_image(pixels) - backbone.encode_image(pixels)).abs().max() > 1e-3
