import pytest
import torch
import torch.nn.functional as F

from clipsteer.models import Backbone, UnknownSiteError
from clipsteer.models.sites import SITE_KINDS
from clipsteer.models.testing import random_vit_b32


@pytest.fixture(scope="module")
def tiny(backbone: Backbone) -> Backbone:
    return backbone


@pytest.fixture(scope="module")
def vit_b32() -> Backbone:
    return random_vit_b32(seed=0)


def hf_image_features(backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = backbone.model.get_image_features(pixel_values=pixels)
    out = out.pooler_output if hasattr(out, "pooler_output") else out
    return F.normalize(out, dim=-1)


@pytest.mark.parametrize("which", ["tiny", "vit_b32"])
def test_encode_image_matches_transformers(which: str, request: pytest.FixtureRequest) -> None:
    backbone: Backbone = request.getfixturevalue(which)
    pixels = torch.randn(2, 3, backbone.image_size, backbone.image_size, generator=torch.Generator().manual_seed(1))
    ours = backbone.encode_image(pixels)
    assert ours.shape == (2, backbone.embed_dim)
    torch.testing.assert_close(ours, hf_image_features(backbone, pixels), atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(2))


def test_encode_image_in_chunks_gives_the_same_embeddings(tiny: Backbone) -> None:
    pixels = torch.randn(5, 3, 32, 32)
    torch.testing.assert_close(tiny.encode_image(pixels, images_per_batch=2), tiny.encode_image(pixels), atol=1e-6, rtol=0)


def test_vit_b32_layout(vit_b32: Backbone) -> None:
    assert (vit_b32.n_layers, vit_b32.d_model, vit_b32.grid, vit_b32.n_tokens, vit_b32.embed_dim) == (12, 768, 7, 50, 512)


def test_capture_resid_post_equals_hidden_states(tiny: Backbone) -> None:
    pixels = torch.randn(3, 3, 32, 32)
    sites = [f"blocks.{layer}.resid_post" for layer in range(tiny.n_layers)]
    captured = tiny.capture(pixels, sites)
    with torch.no_grad():
        hidden = tiny.vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    for layer in range(tiny.n_layers):
        torch.testing.assert_close(captured[f"blocks.{layer}.resid_post"], hidden[layer + 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(tiny.capture(pixels, ["blocks.0.resid_pre"])["blocks.0.resid_pre"], hidden[0])


def test_branches_add_up_to_resid_post(tiny: Backbone) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    for layer in range(tiny.n_layers):
        c = tiny.capture(pixels, [f"blocks.{layer}.{kind}" for kind in SITE_KINDS])
        total = c[f"blocks.{layer}.resid_pre"] + c[f"blocks.{layer}.attn_out"] + c[f"blocks.{layer}.mlp_out"]
        torch.testing.assert_close(total, c[f"blocks.{layer}.resid_post"], atol=1e-5, rtol=0)


def test_capture_token_selection_and_prisma_names(tiny: Backbone) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    full = tiny.capture(pixels, ["blocks.1.hook_resid_post"])["blocks.1.resid_post"]
    assert full.shape == (2, tiny.n_tokens, tiny.d_model)
    torch.testing.assert_close(tiny.capture(pixels, ["blocks.1.resid_post"], tokens="cls")["blocks.1.resid_post"],
                               full[:, :1])
    torch.testing.assert_close(tiny.capture(pixels, ["blocks.1.resid_post"], tokens="patches")["blocks.1.resid_post"],
                               full[:, 1:])


def test_capture_stops_after_deepest_block(tiny: Backbone) -> None:
    calls = []
    handle = tiny.blocks[2].register_forward_hook(lambda *args: calls.append(2))
    try:
        tiny.capture(torch.randn(1, 3, 32, 32), ["blocks.0.resid_post", "blocks.1.mlp_out"])
        assert calls == []
        tiny.encode_image(torch.randn(1, 3, 32, 32))
        assert calls == [2]
    finally:
        handle.remove()


@pytest.mark.parametrize("kind", ["resid_pre", "resid_post"])
def test_encode_from_every_layer_equals_full_forward(tiny: Backbone, kind: str) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    full = tiny.encode_image(pixels)
    for layer in range(tiny.n_layers):
        site = f"blocks.{layer}.{kind}"
        resumed = tiny.encode_from(site, tiny.capture(pixels, [site])[site])
        torch.testing.assert_close(resumed, full, atol=1e-6, rtol=0)


def test_encode_from_rejects_branch_sites_and_bad_shapes(tiny: Backbone) -> None:
    with pytest.raises(ValueError, match="residual-stream site"):
        tiny.encode_from("blocks.1.mlp_out", torch.zeros(1, tiny.n_tokens, tiny.d_model))
    with pytest.raises(ValueError, match=r"expected hidden \[B, 17, 32\]"):
        tiny.encode_from("blocks.1.resid_post", torch.zeros(1, 5, tiny.d_model))


@pytest.mark.parametrize("kind", SITE_KINDS)
def test_identity_intervention_changes_nothing(tiny: Backbone, kind: str) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    clean = tiny.encode_image(pixels)
    with tiny.intervene(f"blocks.1.{kind}", lambda x: x):
        torch.testing.assert_close(tiny.encode_image(pixels), clean, atol=0, rtol=0)


@pytest.mark.parametrize("kind", SITE_KINDS)
def test_intervention_edits_our_forward_and_the_models_own(tiny: Backbone, kind: str) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    clean = tiny.encode_image(pixels)
    # A non-uniform shift: a uniform one would be erased by the next layer norm.
    direction = torch.randn(tiny.d_model, generator=torch.Generator().manual_seed(0))
    with tiny.intervene(f"blocks.1.{kind}", lambda x: x + 3.0 * direction):
        edited = tiny.encode_image(pixels)
        torch.testing.assert_close(hf_image_features(tiny, pixels), edited, atol=1e-5, rtol=0)
    assert (edited - clean).abs().max() > 1e-3
    torch.testing.assert_close(tiny.encode_image(pixels), clean, atol=0, rtol=0)


def test_edit_is_visible_to_a_later_capture_at_the_same_site(tiny: Backbone) -> None:
    pixels = torch.randn(1, 3, 32, 32)
    clean = tiny.capture(pixels, ["blocks.1.resid_post"])["blocks.1.resid_post"]
    with tiny.intervene("blocks.1.resid_post", torch.zeros_like):
        assert tiny.capture(pixels, ["blocks.1.resid_post"])["blocks.1.resid_post"].abs().max() == 0
    assert clean.abs().max() > 0


def test_failing_intervention_leaves_no_hook_and_user_hooks_survive(tiny: Backbone) -> None:
    user_calls = []
    user_handle = tiny.blocks[1].register_forward_hook(lambda *args: user_calls.append(1))
    before = {name: len(m._forward_hooks) + len(m._forward_pre_hooks) for name, m in tiny.model.named_modules()}

    def boom(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    try:
        with pytest.raises(RuntimeError, match="boom"), tiny.intervene("blocks.1.mlp_out", boom):
            tiny.encode_image(torch.randn(1, 3, 32, 32))
        with pytest.raises(KeyError), tiny.intervene("blocks.1.resid_pre", lambda x: x):
            raise KeyError("user code failed inside the block")
        after = {name: len(m._forward_hooks) + len(m._forward_pre_hooks) for name, m in tiny.model.named_modules()}
        assert after == before
        user_calls.clear()
        tiny.encode_image(torch.randn(1, 3, 32, 32))
        assert user_calls == [1]
    finally:
        user_handle.remove()


def test_intervention_must_keep_the_shape(tiny: Backbone) -> None:
    with pytest.raises(ValueError, match="must return a tensor of shape"), \
            tiny.intervene("blocks.0.resid_post", lambda x: x[:, :1]):
        tiny.encode_image(torch.randn(1, 3, 32, 32))


def test_unknown_sites_list_the_valid_ones(tiny: Backbone) -> None:
    with pytest.raises(UnknownSiteError, match=r"layer must be in 0\.\.2"):
        tiny.capture(torch.randn(1, 3, 32, 32), ["blocks.7.resid_post"])
    with pytest.raises(UnknownSiteError, match="resid_pre.*attn_out.*mlp_out.*resid_post"):
        with tiny.intervene("blocks.1.residual", lambda x: x):
            pass


def test_wrong_pixel_shape_is_explained(tiny: Backbone) -> None:
    with pytest.raises(ValueError, match=r"expected pixels \[B, 3, 32, 32\]"):
        tiny.encode_image(torch.randn(1, 3, 64, 64))


def test_zero_shot_head_is_mean_of_normalised_prompts(tiny: Backbone) -> None:
    templates = ("a photo of a {}", "the {}")
    head = tiny.zero_shot_head(["cat", "dog"], templates)
    manual = torch.stack([F.normalize(tiny.encode_text([t.format(c) for t in templates]).mean(0), dim=0)
                          for c in ["cat", "dog"]])
    torch.testing.assert_close(head, manual)
    emb = tiny.encode_image(torch.randn(4, 3, 32, 32))
    logits = tiny.zero_shot_logits(emb, head)
    torch.testing.assert_close(logits, tiny.logit_scale * emb @ head.T)
    with pytest.raises(ValueError, match="must each contain"):
        tiny.zero_shot_head(["cat"], ("no placeholder",))


def test_encode_text_is_normalised_and_pools_at_eos(tiny: Backbone) -> None:
    emb = tiny.encode_text(["a photo of a cat", "dog"])
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    # Padding must not change a caption's embedding: "dog" alone vs "dog" padded beside a longer caption.
    torch.testing.assert_close(tiny.encode_text(["dog"])[0], emb[1], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", SITE_KINDS)
def test_edits_inside_the_last_block_reach_the_embedding(tiny: Backbone, kind: str) -> None:
    """The last block computes only its CLS row unless hooked; an edit inside it must still see every token
    (here: a shift of the non-CLS tokens, which reaches the CLS row only through attention)."""
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))

    def shift_patches(x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, 1:] += torch.linspace(-3.0, 3.0, x.shape[-1])  # not constant: layer norm would remove that
        return y

    with torch.no_grad(), tiny.intervene(f"blocks.{tiny.n_layers - 1}.{kind}", shift_patches):
        edited = tiny.encode_image(pixels)
        every_row = tiny._head(tiny._run_blocks(tiny._embed(pixels), 0, tiny.n_layers)[:, 0])  # the whole block
    torch.testing.assert_close(edited, every_row, atol=1e-6, rtol=0)
    if kind == "resid_pre":  # the shifted keys and values move the CLS row
        assert (edited - tiny.encode_image(pixels)).abs().max() > 1e-3
