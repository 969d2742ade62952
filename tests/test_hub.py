"""hf://org/repo[/subfolder] resolves through huggingface_hub's cache (offline, pre-populated here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clipsteer.hub import HubError, parse_hub_address, resolve_hub_path
from clipsteer.models import Backbone
from clipsteer.models.loading import CheckpointError
from clipsteer.models.testing import tiny_backbone
from clipsteer.sae import SAEConfig, SparseAutoencoder, load_any_sae, save_sae
from hub_cache import hub_cache, populate_hub_cache  # noqa: F401  (fixture)


def test_addresses_parse() -> None:
    assert str(parse_hub_address("hf://org/repo/layer_8/topk")) == "hf://org/repo/layer_8/topk"
    assert parse_hub_address("hf:/org/repo").subfolder is None  # what Path() makes of hf://org/repo
    for bad in ("hf://org", "hf://org/repo/../x", "org/repo"):
        with pytest.raises(HubError):
            parse_hub_address(bad)


def test_model_and_sae_resolve_from_the_cache_offline(tmp_path: Path, hub_cache: Path) -> None:  # noqa: F811
    original = tiny_backbone(seed=2)
    populate_hub_cache(hub_cache, "org/tiny-clip", original.save_pretrained(tmp_path / "model"))
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.1.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    populate_hub_cache(hub_cache, "org/saes", save_sae(sae, tmp_path / "sae"), subfolder="layer_1/relu")
    loaded = Backbone.from_pretrained("hf://org/tiny-clip")
    pixels = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded.encode_image(pixels), original.encode_image(pixels))
    assert resolve_hub_path("hf://org/saes/layer_1/relu").name == "relu"
    x = torch.randn(4, 32)
    for spelling in ("hf://org/saes/layer_1/relu", Path("hf://org/saes/layer_1/relu")):
        torch.testing.assert_close(load_any_sae(spelling).decode(load_any_sae(spelling).encode(x), x=x),
                                   sae.decode(sae.encode(x), x=x))


def test_absent_while_offline_is_a_clear_error(hub_cache: Path) -> None:  # noqa: F811
    with pytest.raises(CheckpointError, match=r"hf://org/missing: not in the local Hugging Face cache, and the Hub "
                                              r"is disabled \(HF_HUB_OFFLINE=1\)"):
        Backbone.from_pretrained("hf://org/missing")
    with pytest.raises(HubError, match="hf download org/missing"):
        load_any_sae("hf://org/missing/sae")
