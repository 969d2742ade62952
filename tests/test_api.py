"""The short public API on a random world-geometry CLIP and a random SAE."""

from pathlib import Path

import pytest
import torch

import clipsteer as cs
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder


@pytest.fixture(scope="module")
def sae_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, architecture="topk", k=4, site="blocks.1.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    return save_sae(sae, tmp_path_factory.mktemp("sae") / "sae")


def test_load_features_top_images_steer(world_geometry_model_dir: Path, sae_dir: Path) -> None:
    model, sae = cs.load(world_geometry_model_dir, sae_dir)
    images = cs.open_dataset("world:zero_shot/test:12")
    codes = cs.features(model, sae, [images.load(i) for i in range(12)])
    assert codes.shape == (12, 65, 64) and int((codes > 0).sum(-1).max()) <= 4
    feature = int(codes.amax(dim=(0, 1)).argmax())
    top = cs.top_images(model, sae, images, feature, k=3, images_per_batch=5)
    brute = codes[..., feature].amax(dim=1)
    assert [i for i, _ in top] == brute.argsort(descending=True)[:3].tolist()
    assert [v for _, v in top] == pytest.approx(brute.sort(descending=True).values[:3].tolist(), rel=1e-5)

    pixels = model.pixels([images.load(i) for i in range(4)])
    clean = model.encode_image(pixels)
    with cs.steering(model, sae, {feature: 50.0}):
        steered = model.encode_image(pixels)
    with cs.suppressing(model, sae, [j for j in range(64) if codes[:4, :, j].max() == 0]):
        untouched = model.encode_image(pixels)  # features that never fire: suppressing them is the identity
    assert not torch.allclose(steered, clean, atol=1e-3)
    torch.testing.assert_close(untouched, clean, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.encode_image(pixels), clean)  # hooks are gone after the block


def test_load_refuses_a_mismatched_sae(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    save_sae(SparseAutoencoder(SAEConfig(d_in=48, d_sae=96, site="blocks.1.resid_post")), tmp_path / "wide")
    with pytest.raises(ValueError, match="d_in = 48.*d_model = 32"):
        cs.load(world_geometry_model_dir, tmp_path / "wide")
