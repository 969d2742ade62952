import dataclasses

import pytest
import torch

from clipsteer.models.testing import tiny_backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.interventions import Edit, edit_fn, steer
from clipsteer.steer.sae_adapter import SAEDictionary


def random_sae(normalization: str, architecture: str = "relu") -> SparseAutoencoder:
    config = SAEConfig(d_in=32, d_sae=64, architecture=architecture, normalization=normalization,
                       k=8 if architecture == "topk" else None)
    sae = SparseAutoencoder(config, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sae.b_enc.fill_(0.05)  # some features fire
        sae.b_dec.normal_(generator=torch.Generator().manual_seed(1))
    return sae


@pytest.mark.parametrize("normalization", ["none", "layer_norm", "token_rescale"])
@pytest.mark.parametrize("architecture", ["relu", "topk"])
def test_delta_clamp_equals_decode_difference(normalization: str, architecture: str) -> None:
    sae = random_sae(normalization, architecture)
    h = torch.randn(2, 17, 32) * 3
    f = sae.encode(h)
    f_edit = f.clone()
    f_edit[..., 5] = 7.0
    expected = h + sae.decode(f_edit, x=h) - sae.decode(f, x=h)
    got = edit_fn(SAEDictionary(sae), [Edit((5,), "clamp", 7.0)])(h)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
    replaced = edit_fn(SAEDictionary(sae), [Edit((5,), "clamp", 7.0)], form="replace")(h)
    torch.testing.assert_close(replaced, sae.decode(f_edit, x=h), atol=1e-4, rtol=1e-5)


def test_identity_and_own_value_clamps_change_nothing_in_the_model() -> None:
    backbone = tiny_backbone(seed=0)
    sae = random_sae("layer_norm")
    dictionary = SAEDictionary(sae)
    pixels = torch.randn(3, 3, 32, 32)
    clean = backbone.encode_image(pixels)
    site = "blocks.1.resid_post"
    with steer(backbone, {site: (dictionary, [Edit((1, 2, 3), "scale", 1.0)])}):
        torch.testing.assert_close(backbone.encode_image(pixels), clean, atol=1e-5, rtol=0)
    # Clamping a feature to the value it already has, token by token (only where it has that value).
    h = backbone.capture(pixels, [site])[site]
    with torch.no_grad():
        f = sae.encode(h)
    j = int(f.sum(dim=(0, 1)).argmax())
    value = float(f[0, 0, j])
    mask = torch.zeros(3, backbone.n_tokens, dtype=torch.bool)
    mask[0, 0] = True
    with steer(backbone, {site: (dictionary, [Edit((j,), "clamp", value, tokens=mask)])}):
        torch.testing.assert_close(backbone.encode_image(pixels), clean, atol=1e-5, rtol=0)


def test_sae_for_another_width_is_refused() -> None:
    sae = SparseAutoencoder(dataclasses.replace(SAEConfig(d_in=16, d_sae=32), site="blocks.1.resid_post"))
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match="d_in=16"), \
            steer(backbone, {"blocks.1.resid_post": (SAEDictionary(sae), [Edit((0,), "ablate")])}):
        backbone.encode_image(torch.randn(1, 3, 32, 32))
