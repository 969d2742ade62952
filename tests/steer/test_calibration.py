import math

import pytest
import torch

from clipsteer.models.testing import random_vit_b32, tiny_backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.steer.calibration import (
    PAPER_ALPHA,
    PAPER_RELATIVE_ALPHA,
    layer_normed_norm,
    steering_constants,
)
from clipsteer.steer.configs import SteerabilityConfig
from clipsteer.steer.control import random_directions_like
from clipsteer.steer.dictionary import LayerNormedDirections
from clipsteer.steer.interventions import Edit, edit_fn


def with_logit_scale(backbone, value: float):
    with torch.no_grad():
        backbone.model.logit_scale.fill_(math.log(value))
    return backbone


def test_relative_alpha_is_the_papers_alpha_on_a_vit_b32_shaped_model() -> None:
    # The real ViT-B/32 architecture config (random weights), with CLIP's trained logit scale (100).
    b32 = random_vit_b32(seed=0)
    assert (b32.d_model, b32.n_layers, b32.grid) == (768, 12, 7)
    untrained = steering_constants(b32.d_model, b32.logit_scale)  # CLIPConfig's initial scale, e^2.6592
    assert untrained.temperature == pytest.approx(math.exp(2.6592), rel=1e-4)
    with_logit_scale(b32, 100.0)
    default = SteerabilityConfig()  # the command's defaults, as `steerability` resolves them
    constants = steering_constants(b32.d_model, b32.logit_scale, default.alpha, default.relative_alpha,
                                   default.temperature)
    assert constants.alpha == pytest.approx(PAPER_ALPHA, abs=1e-9)
    assert constants.temperature == pytest.approx(b32.logit_scale) == pytest.approx(100.0)
    assert constants.alpha_relative == pytest.approx(150 / math.sqrt(767))
    assert constants.translate(-20.0) == pytest.approx(-20.0)  # curves are literal on ViT-B/32


def test_relative_alpha_on_a_d128_model_and_the_default_temperature() -> None:
    toy = with_logit_scale(tiny_backbone(d_model=128, n_layers=1), 22.0)
    constants = steering_constants(toy.d_model, toy.logit_scale)
    assert constants.alpha == pytest.approx(150 * math.sqrt(127 / 767))
    assert 60.5 < constants.alpha < 61.5
    assert constants.temperature == pytest.approx(22.0)
    assert constants.translate(150.0) == pytest.approx(constants.alpha)
    assert constants.translate(20.0) == pytest.approx(20 * constants.alpha / 150)


def test_literal_constants_are_one_flag_away() -> None:
    constants = steering_constants(128, 22.0, alpha=150.0, temperature=100.0)
    assert (constants.alpha, constants.temperature) == (150.0, 100.0)
    assert constants.alpha_relative == pytest.approx(150 / math.sqrt(127))
    assert constants.translate(20.0) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        steering_constants(128, 22.0, temperature=0.0)
    assert PAPER_RELATIVE_ALPHA * layer_normed_norm(768) == pytest.approx(150.0)


def test_layer_normed_token_norm_matches_the_sae_normalisation() -> None:
    from clipsteer.sae.normalization import normalize

    x = torch.randn(7, 128) * 5 + 3
    x_norm, _ = normalize(x, "layer_norm")
    torch.testing.assert_close(x_norm.norm(dim=-1), torch.full((7,), layer_normed_norm(128)), atol=1e-3, rtol=0)


def test_layer_normed_neuron_clamp_moves_x_by_sigma_times_the_code_change() -> None:
    x = torch.randn(2, 5, 16) * 3 + 1
    neurons = LayerNormedDirections.neurons(16)
    mu, sigma = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
    torch.testing.assert_close(neurons.codes(x), (x - mu) / (sigma + 1e-5))
    edited = edit_fn(neurons, [Edit((3,), "clamp", 4.0)])(x)
    expected = x.clone()
    expected[..., 3] = x[..., 3] + sigma[..., 0] * (4.0 - neurons.codes(x)[..., 3])
    torch.testing.assert_close(edited, expected)


def test_null_is_an_untrained_sae_of_the_same_config_with_random_unit_directions() -> None:
    config = SAEConfig(d_in=32, d_sae=96, architecture="topk", k=4, site="blocks.1.resid_post")
    null = random_directions_like(config, seed=3)
    assert null.config == config and not null.training
    torch.testing.assert_close(null.W_dec.norm(dim=1), torch.ones(96))
    torch.testing.assert_close(null.W_enc, null.W_dec.T)
    torch.testing.assert_close(random_directions_like(config, seed=3).W_dec, null.W_dec)
    assert (random_directions_like(config, seed=4).W_dec - null.W_dec).abs().max() > 0.1
    # isotropic: no coordinate is preferred (mean |cos| with each axis ≈ that of random vectors)
    big = random_directions_like(SAEConfig(d_in=32, d_sae=4096), seed=0).W_dec
    assert float(big.detach().mean(0).abs().max()) < 0.02
    batch = random_directions_like(SAEConfig(d_in=32, d_sae=64, architecture="batchtopk", k=4), seed=0)
    assert batch.config.architecture == "topk"  # no trained threshold: the TopK rule with the same k
