import json
from pathlib import Path

from clipsteer.demo import DemoConfig, run_demo


def test_demo_runs_end_to_end_on_the_shipped_toy_clip(tmp_path: Path) -> None:
    """The main job at toy sizes: every stage runs and writes its artefacts, and a rerun resumes."""
    config = DemoConfig(out=tmp_path / "demo", harvest_images=64, train_tokens=400_000, eval_images=48,
                        steer_images=6, steer_max_features=8)
    row = run_demo(config)
    assert row["layer"] == 2
    assert 0 < row["l0_patches"] <= 32 and row["explained_variance"] > 0.5
    assert {"steerable_sae", "steerable_neurons", "steerable_random_sae", "steerable_random_neurons"} <= set(row)
    layer_dir = tmp_path / "demo" / "layer2"
    summary = json.loads((layer_dir / "steerability" / "summary.json").read_text())
    assert summary["sae"]["n_features"] == 8 and summary["neurons"]["n_features"] == 128
    assert (tmp_path / "demo" / "layers.png").stat().st_size > 0
    assert run_demo(config) == row  # everything is reused on a rerun
