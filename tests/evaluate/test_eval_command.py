import json
from pathlib import Path

import pytest
import torch

from clipsteer.evaluate.commands import EvalConfig, evaluate_sae
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder


def test_eval_writes_all_metric_groups(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.1.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "sae")
    result = evaluate_sae(EvalConfig(sae=tmp_path / "sae", model=str(world_geometry_model_dir), n_images=40, n_patch_images=20,
                                     batch_size=20))
    saved = json.loads((tmp_path / "sae" / "eval.json").read_text())
    assert saved["site"] == "blocks.1.resid_post" == result["site"]
    rec = saved["reconstruction"]
    assert rec["tokens"] == 40 * 65 and 0 <= rec["dead_fraction"] <= 1 and rec["l0_cls"] is not None
    factors = saved["factor_recovery"]
    assert set(factors["image_mean_auroc_by_group"]) == {"shape", "colour", "background", "word"}
    assert 0.5 <= factors["image_mean_auroc_shape_colour_background"] <= 1.0
    assert {"untrained_control_image_mean_auroc_by_group", "untrained_control_patch_mean_auroc_by_group"} <= set(factors)
    assert set(saved["downstream"]) >= {"ce_clean", "ce_sae", "ce_zero", "ce_recovered_pct", "embedding_cosine_sae"}
    assert (tmp_path / "sae" / "feature_density.png").stat().st_size > 0


def test_eval_refuses_an_sae_of_another_width(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    save_sae(SparseAutoencoder(SAEConfig(d_in=48, d_sae=96, site="blocks.1.resid_post")), tmp_path / "wide")
    with pytest.raises(ValueError, match="d_in = 48.*d_model = 32"):
        evaluate_sae(EvalConfig(sae=tmp_path / "wide", model=str(world_geometry_model_dir), n_images=10))
