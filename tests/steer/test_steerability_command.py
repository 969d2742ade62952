from pathlib import Path

import pytest
import torch

from clipsteer.errors import ConfigError
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder
from clipsteer.steer.commands import SteerabilityConfig, steerability
from clipsteer.steer.results import SteerabilitySummary, read_feature_rows


def test_steerability_command_writes_tables_for_every_basis(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=64, site="blocks.2.resid_post"),
                            generator=torch.Generator().manual_seed(0))
    save_sae(sae, tmp_path / "sae")
    out = tmp_path / "steer"
    summary = steerability(SteerabilityConfig(out=out, sae=tmp_path / "sae", model=str(world_geometry_model_dir),
                                              images="world:zero_shot/test", n_images=8, alpha=20.0,
                                              max_features=10, curve_features=(0, 3), curve_alphas=(0.0, 20.0),
                                              alpha_sweep=(0.0, 20.0)))
    for basis, n in [("sae", 10), ("neurons", 32), ("random_sae", 10), ("random_neurons", 32)]:
        rows = read_feature_rows(out, basis)
        assert len(rows) == n == summary.bases[basis].n_features
        assert all(r.steerable == (r.steerability > 0.10) for r in rows)
        assert sum(r.steerable for r in rows) == summary.bases[basis].n_steerable
        assert (out / f"features_{basis}.csv").read_text().startswith("feature,steerability,power,top_concept")
    assert summary.alpha_sweep["neurons"]["20.0"] == summary.bases["neurons"].fraction_steerable
    curves = summary.strength_curves
    assert set(curves) == {"0", "3"} and curves["0"].alpha == (0.0, 20.0)
    # The α = 20 point of a curve is the main run's score of that feature.
    sae_rows = {r.feature: r for r in read_feature_rows(out, "sae")}
    assert curves["0"].steerability[1] == pytest.approx(sae_rows[0].steerability, rel=1e-5)
    assert SteerabilitySummary.read(out) == summary and summary.site == "blocks.2.resid_post"


def test_steerability_needs_a_site_without_sae(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give --site"):
        steerability(SteerabilityConfig(out=tmp_path, model=str(world_geometry_model_dir), n_images=4))
