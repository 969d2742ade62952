import pytest
import torch

from clipsteer.steer.dictionary import DirectionSet
from clipsteer.steer.interventions import Edit, apply_edit, edit_fn, steer, token_mask


@pytest.fixture(scope="module")
def directions():
    return DirectionSet(torch.randn(24, 32, generator=torch.Generator().manual_seed(0)))


def test_neuron_clamp_sets_the_coordinate(backbone) -> None:
    neurons = DirectionSet.neurons(backbone.d_model)
    h = torch.randn(2, backbone.n_tokens, backbone.d_model)
    out = edit_fn(neurons, [Edit((5,), "clamp", 150.0)])(h)
    assert torch.all(out[..., 5] == 150.0)
    torch.testing.assert_close(out[..., :5], h[..., :5])


def test_identity_edits_change_nothing(backbone, directions) -> None:
    pixels = torch.randn(3, 3, 32, 32)
    clean = backbone.encode_image(pixels)
    for edit in [Edit((1, 2), "scale", 1.0), Edit((3,), "add", 0.0)]:
        with steer(backbone, {"blocks.1.resid_post": (directions, [edit])}):
            torch.testing.assert_close(backbone.encode_image(pixels), clean, atol=1e-6, rtol=0)


def test_clamping_to_own_value_changes_nothing(backbone, directions) -> None:
    """Clamp only where the code already has the value: a clamp to each token's own value is a no-op."""
    h = torch.randn(2, backbone.n_tokens, backbone.d_model)
    f = directions.codes(h)
    own = float(f[0, 3, 7])
    out = edit_fn(directions, [Edit((7,), "clamp", own, tokens=torch.arange(backbone.n_tokens) == 3)])(h[:1])
    torch.testing.assert_close(out, h[:1], atol=1e-5, rtol=0)


def test_patch_only_edit_leaves_cls_untouched(backbone, directions) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    site = "blocks.1.resid_post"
    clean = backbone.capture(pixels, [site])[site]
    with steer(backbone, {site: (directions, [Edit((0, 4), "clamp", 20.0, tokens="patches")])}):
        edited = backbone.capture(pixels, [site])[site]
    torch.testing.assert_close(edited[:, 0], clean[:, 0], atol=0, rtol=0)
    assert (edited[:, 1:] - clean[:, 1:]).abs().max() > 1.0


def test_patch_grid_mask_selects_only_masked_patches(backbone) -> None:
    grid_mask = torch.zeros(2, backbone.grid, backbone.grid, dtype=torch.bool)
    grid_mask[0, 1, 2] = True
    mask = token_mask(grid_mask, 2, backbone.n_tokens, torch.device("cpu"))
    assert mask.shape == (2, backbone.n_tokens) and mask.sum() == 1 and mask[0, 1 + 1 * backbone.grid + 2]
    with pytest.raises(ValueError, match="token mask has shape"):
        token_mask(torch.ones(5, dtype=torch.bool), 2, backbone.n_tokens, torch.device("cpu"))


def test_edit_ops() -> None:
    f = torch.tensor([[[0.0, 2.0, 3.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert apply_edit(f, Edit((1,), "scale", 2.0), mask)[0, 0].tolist() == [0.0, 4.0, 3.0]
    assert apply_edit(f, Edit((2,), "add", -1.0), mask)[0, 0].tolist() == [0.0, 2.0, 2.0]
    assert apply_edit(f, Edit((1, 2), "ablate"), mask)[0, 0].tolist() == [0.0, 0.0, 0.0]
    means = torch.tensor([5.0, 6.0, 7.0])
    assert apply_edit(f, Edit((0,), "mean_ablate", means=means), mask)[0, 0].tolist() == [5.0, 2.0, 3.0]
    assert apply_edit(f, Edit((0, 1), "clamp", 9.0, only_where_active=True), mask)[0, 0].tolist() == [0.0, 9.0, 3.0]
    with pytest.raises(ValueError, match="out of range"):
        apply_edit(f, Edit((3,), "ablate"), mask)
    with pytest.raises(ValueError, match="mean_ablate needs"):
        Edit((0,), "mean_ablate")


def test_replace_form_discards_the_error_term(backbone, directions) -> None:
    h = torch.randn(1, backbone.n_tokens, backbone.d_model)
    out = edit_fn(directions, [Edit((0,), "scale", 1.0)], form="replace")(h)
    torch.testing.assert_close(out, directions.codes(h) @ directions.weight)


def test_replace_edited_form_replaces_only_the_edited_tokens(backbone, directions) -> None:
    h = torch.randn(2, backbone.n_tokens, backbone.d_model)
    token = torch.arange(backbone.n_tokens) == 2
    out = edit_fn(directions, [Edit((0,), "ablate", tokens=token)], form="replace_edited")(h)
    edited = directions.codes(h)
    edited[:, 2, 0] = 0.0
    torch.testing.assert_close(out[:, 2], (edited @ directions.weight)[:, 2])
    torch.testing.assert_close(out[:, ~token], h[:, ~token], atol=0, rtol=0)
    # an edit that changes no code leaves h exactly as it was (the error term is kept there)
    unchanged = edit_fn(directions, [Edit((0,), "scale", 1.0)], form="replace_edited")(h)
    torch.testing.assert_close(unchanged, h, atol=0, rtol=0)


def test_several_sites_at_once_and_hooks_removed(backbone, directions) -> None:
    pixels = torch.randn(2, 3, 32, 32)
    clean = backbone.encode_image(pixels)
    plan = {"blocks.0.resid_post": (directions, [Edit((0,), "clamp", 10.0)]),
            "blocks.2.mlp_out": (directions, [Edit((1,), "clamp", 10.0)])}
    with steer(backbone, plan):
        both = backbone.encode_image(pixels)
    with steer(backbone, dict(list(plan.items())[:1])):
        one = backbone.encode_image(pixels)
    assert (both - one).abs().max() > 1e-4
    torch.testing.assert_close(backbone.encode_image(pixels), clean, atol=0, rtol=0)


def test_wrong_width_dictionary_is_explained(backbone) -> None:
    wrong = DirectionSet.neurons(16)
    with pytest.raises(ValueError, match="expects d_in = 16"), \
            steer(backbone, {"blocks.0.resid_post": (wrong, [Edit((0,), "ablate")])}):
        backbone.encode_image(torch.randn(1, 3, 32, 32))
