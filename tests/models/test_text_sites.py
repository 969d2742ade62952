import pytest
import torch

from clipsteer.models import UnknownSiteError
from clipsteer.models.sites import Site, parse_site


def test_text_site_names_parse_and_validate() -> None:
    assert parse_site("text.blocks.1.resid_post", 3, 2) == Site(1, "resid_post", "text")
    assert parse_site("text.blocks.1.hook_mlp_out", 3, 2).name == "text.blocks.1.mlp_out"
    assert parse_site("vision.blocks.2.resid_post", 3, 2) == parse_site("blocks.2.resid_post", 3, 2)
    with pytest.raises(UnknownSiteError, match="text tower has 2 blocks"):
        parse_site("text.blocks.2.resid_post", 3, 2)
    with pytest.raises(UnknownSiteError, match="this model has none"):
        parse_site("text.blocks.0.resid_post", 3, None)


def test_capture_text_equals_the_text_models_hidden_states(backbone) -> None:
    captions = ["a cat", "a photo of the red dog", "the word bird"]
    sites = [f"text.blocks.{layer}.resid_post" for layer in range(backbone.n_text_layers)]
    acts, valid = backbone.capture_text(captions, sites)
    enc = backbone.tokenize(captions)
    reference = backbone.model.text_model(**enc, output_hidden_states=True).hidden_states
    for layer, site in enumerate(sites):
        torch.testing.assert_close(acts[site], reference[layer + 1])
    assert valid.tolist() == enc["attention_mask"].bool().tolist()
    assert valid.sum(1).tolist() == [4, 8, 5]  # bos + words + eos, padding after


def test_text_branches_add_up_and_vision_capture_refuses_text_sites(backbone) -> None:
    acts, _ = backbone.capture_text(["a red cat"], ["text.blocks.1.resid_pre", "text.blocks.1.attn_out",
                                                "text.blocks.1.mlp_out", "text.blocks.1.resid_post"])
    summed = acts["text.blocks.1.resid_pre"] + acts["text.blocks.1.attn_out"] + acts["text.blocks.1.mlp_out"]
    torch.testing.assert_close(summed, acts["text.blocks.1.resid_post"], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="use capture_text"):
        backbone.capture(torch.zeros(1, 3, 32, 32), ["text.blocks.0.resid_post"])
    with pytest.raises(ValueError, match="needs text sites"):
        backbone.capture_text(["a cat"], ["blocks.0.resid_post"])


def test_intervening_on_a_text_site_edits_encode_text_and_is_removed(backbone) -> None:
    clean = backbone.encode_text(["a cat", "a dog"])
    shift = torch.randn(32, generator=torch.Generator().manual_seed(0))  # a constant per token would be LN'd away
    with backbone.intervene("text.blocks.0.resid_post", lambda x: x + 3.0 * shift):
        edited = backbone.encode_text(["a cat", "a dog"])
    assert (edited - clean).abs().max() > 1e-3
    torch.testing.assert_close(backbone.encode_text(["a cat", "a dog"]), clean)
