from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clipsteer.evaluate.commands import EvalConfig, evaluate_sae
from clipsteer.evaluate.results import EvalResult
from clipsteer.models.testing import random_vit_b32
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder


def test_eval_on_the_world_writes_every_metric_group(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.1.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "sae")
    result = evaluate_sae(EvalConfig(sae=tmp_path / "sae", model=str(world_geometry_model_dir), n_images=40,
                                     n_patch_images=20, n_downstream_images=30, images_per_batch=20))
    saved = EvalResult.read(tmp_path / "sae")
    assert saved == result and saved.site == "blocks.1.resid_post"
    rec = saved.reconstruction
    assert rec.tokens == 40 * 65 and 0 <= rec.dead_fraction <= 1 and rec.l0_cls is not None
    factors = saved.factor_recovery
    assert factors is not None and set(factors.image_auroc) == {"shape", "colour", "background", "word"}
    assert set(factors.control_patch_auroc) == set(factors.patch_auroc) == set(factors.image_auroc)
    assert all(0.5 <= v <= 1.0 for v in factors.image_auroc.values())
    down = saved.downstream
    # Labelled (shape) images: accuracies are measured. (This random model's tokenizer knows no shape
    # names, so every class prompt embeds alike and CE recovered is undefined: None, not a number.)
    assert down is not None and down.classes[0] == "circle" and down.n_images == 30
    assert down.accuracy_clean is not None and down.ce_recovered_pct is None
    assert (tmp_path / "sae" / "feature_density.png").stat().st_size > 0


def test_eval_on_an_image_folder_with_a_vit_b32(tmp_path: Path) -> None:
    """The real-CLIP path: a random-weight ViT-B/32 folder, an unlabelled image folder, user classes."""
    model_dir = random_vit_b32(seed=0, tokenizer=True).save_pretrained(tmp_path / "vit_b32")
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"not a png")
    save_sae(SparseAutoencoder(SAEConfig(d_in=768, d_sae=1536, site="blocks.6.resid_post")), tmp_path / "sae")
    result = evaluate_sae(EvalConfig(sae=tmp_path / "sae", model=str(model_dir), dataset=str(images),
                                     downstream_dataset=None, classes=("red", "blue"), n_images=10))
    assert result.n_images == 4 and result.reconstruction.tokens == 3 * 50  # the broken file is skipped
    assert result.factor_recovery is None  # no ground truth in an image folder
    down = result.downstream
    assert down is not None and down.classes == ("red", "blue") and down.ce_recovered_pct is None
    assert down.kl_zero_shot >= 0 and 0 <= down.agreement <= 1 and -1 <= down.embedding_cosine <= 1
    assert EvalResult.read(tmp_path / "sae") == result


def test_eval_refuses_an_sae_of_another_width(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    save_sae(SparseAutoencoder(SAEConfig(d_in=48, d_sae=96, site="blocks.1.resid_post")), tmp_path / "wide")
    with pytest.raises(ValueError, match="d_in = 48.*d_model = 32"):
        evaluate_sae(EvalConfig(sae=tmp_path / "wide", model=str(world_geometry_model_dir), n_images=10))
    with pytest.raises(ValueError, match="--n-images must be a positive number"):
        evaluate_sae(EvalConfig(sae=tmp_path / "wide", n_images=0))
