import dataclasses
from pathlib import Path

import pytest

from clipsteer.errors import ConfigError
from clipsteer.experiments.configs import SparsityStudyConfig
from clipsteer.experiments.sparsity import SparsityStudyResult, sparsity_study


def test_sparsity_study_measures_every_layer_of_both_towers(world_geometry_model_dir: Path, tmp_path: Path) -> None:
    trainer = dataclasses.replace(SparsityStudyConfig().trainer, tokens_per_batch=64, total_tokens=640,
                                  lr_warmup_steps=1, init_samples=256)
    config = SparsityStudyConfig(out=tmp_path / "s", model=str(world_geometry_model_dir), n_images=10,
                                 n_captions=40, trainer=trainer)
    rows = sparsity_study(config).rows
    assert [(r.tower, r.layer) for r in rows] == [("vision", 0), ("vision", 1), ("vision", 2), ("text", 0),
                                                   ("text", 1)]
    for row in rows:
        assert row.d_sae == 32 * 4 and row.train_tokens == 640
        assert 0 <= row.l0_first <= row.d_sae and 0 <= row.l0_rest <= row.d_sae
        low, high = sorted((row.l0_first, row.l0_rest))
        assert low - 1e-4 <= row.l0_all <= high + 1e-4  # the mean over all tokens lies between the two groups
        assert row.density_first == pytest.approx(row.l0_first / row.d_sae)
    assert SparsityStudyResult.read(tmp_path / "s").rows == rows
    assert (tmp_path / "s" / "sparsity.png").stat().st_size > 0
    assert (tmp_path / "s" / "sparsity.csv").read_text().startswith("tower,layer,d_sae")


def test_captions_from_a_file_and_a_clear_error(tmp_path: Path) -> None:
    from clipsteer.experiments.sparsity import read_captions

    path = tmp_path / "captions.txt"
    path.write_text("a red star\n\na cat on the water\n")
    assert read_captions(str(path), 2) == ["a red star", "a cat on the water"]
    with pytest.raises(ConfigError, match="needs --n-captions 3"):
        read_captions(str(path), 3)
