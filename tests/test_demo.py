from dataclasses import replace
from pathlib import Path

from clipsteer.demo import DemoConfig, run_demo
from clipsteer.experiments.layer_sweep import LayerSweepResult
from clipsteer.steer.results import SteerabilitySummary


def test_demo_runs_end_to_end_on_the_shipped_toy_clip(tmp_path: Path) -> None:
    """The main job at toy sizes: every stage runs and writes its artefacts, and a rerun resumes."""
    default = DemoConfig()
    config = replace(default, out=tmp_path / "demo", harvest=replace(default.harvest, max_images=64),
                     train=replace(default.train, trainer=replace(default.train.trainer, total_tokens=400_000)),
                     eval=replace(default.eval, n_images=48, n_downstream_images=48),
                     steer=replace(default.steer, n_images=6, max_features=8, match_n_images=100))
    row = run_demo(config)
    assert row.layer == 2 and row.site == "blocks.2.resid_post"
    assert 0 < row.l0_patches <= 32 and row.explained_variance > 0.5
    assert set(row.steerable) == {"sae", "null", "neurons", "neurons_ln"}
    assert set(row.concept_match) == set(row.concept_match_shuffled) == set(row.steerable)
    assert row.steer_temperature is not None and 60.5 < row.steer_alpha < 61.5  # 150·√(127/767) on d = 128
    assert row.factor_auroc_image is not None and row.factor_auroc_image_control is not None
    summary = SteerabilitySummary.read(tmp_path / "demo" / "layer2" / "steerability")
    assert summary.bases["sae"].n_features == 8 and summary.bases["neurons"].n_features == 128
    assert summary.bases["null"].n_features == 8 and summary.vocabulary_size == row.steer_vocabulary_size
    assert summary.temperature == summary.logit_scale and summary.vocabulary.startswith("images:world:")
    assert row.steerable["sae"] == summary.bases["sae"].fraction_steerable
    assert LayerSweepResult.read(tmp_path / "demo").rows == (row,)
    assert (tmp_path / "demo" / "layers.png").stat().st_size > 0
    assert run_demo(config) == row  # everything is reused on a rerun
