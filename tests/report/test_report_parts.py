"""Report pieces on hand-made inputs: heat maps, feature choice, and errors for unusable run folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsteer.report.cards import choose_features
from clipsteer.report.images import heatmap_overlay, square_thumbnail
from clipsteer.report.sources import RunDirectoryError, discover, find_quality, read_suppression_results
from clipsteer.steer.results import BasisSummary, SteerabilitySummary


def test_heatmap_tints_the_firing_patch_and_fades_the_rest() -> None:
    image = Image.new("RGB", (80, 64), (100, 100, 100))  # not square: centre-cropped to 64×64
    patch_map = np.zeros((4, 4), dtype=np.float32)
    patch_map[1, 2] = 3.0
    out = np.asarray(heatmap_overlay(image, patch_map, side=64)).astype(int)
    assert out.shape == (64, 64, 3)
    hot, cold = out[16:32, 32:48], out[:16, :16]   # patch (1, 2) is rows 16–31, columns 32–47
    assert (hot[..., 0] > 180).all() and (hot[..., 2] < 60).all()
    assert (cold == cold[0, 0]).all() and cold[0, 0, 0] < 100   # silent patches: the image, dimmed
    assert np.asarray(square_thumbnail(image, 32)).shape == (32, 32, 3)
    with pytest.raises(ValueError, match="square"):
        heatmap_overlay(image, np.zeros((2, 3)), side=32)


def test_choose_features_puts_required_then_most_steerable_then_fills() -> None:
    chosen = choose_features(100, scored=[(4, 0.2), (9, 0.9), (1, 0.5)], required=[50, 9], n_cards=6)
    assert chosen[:4] == [50, 9, 1, 4]
    assert len(chosen) == 6 and len(set(chosen)) == 6 and all(0 <= j < 100 for j in chosen)
    assert choose_features(3, scored=[], required=[], n_cards=10) == [0, 1, 2]


def test_run_folders_without_saes_or_with_broken_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match="not found"):
        discover(tmp_path / "missing")
    with pytest.raises(RunDirectoryError, match="no clipsteer SAE folder"):
        discover(tmp_path)
    (tmp_path / "eval.json").write_text(json.dumps({"reconstruction": {"l0_cls": 3}}))
    assert find_quality(tmp_path, tmp_path) is None  # not an EvalResult: the report measures quality itself
    (tmp_path / "debias" / "x").mkdir(parents=True)
    (tmp_path / "debias" / "x" / "result.json").write_text(json.dumps({"before": {}, "after": {}}))
    with pytest.raises(ValueError, match=r"result.json: missing field\(s\) \['experiment'"):
        read_suppression_results(tmp_path)


def test_steerability_is_matched_to_its_own_sae_when_paths_were_recorded_relative(tmp_path: Path) -> None:
    """Two layers whose SAE folders share their last parts: each summary names its SAE relative to another cwd."""
    from clipsteer.report.sources import find_steering

    run = tmp_path / "sweep"
    for layer in (1, 2):
        (run / f"layer{layer}" / "train" / "saes" / "topk").mkdir(parents=True)
        steer = run / f"layer{layer}" / "steerability"
        steer.mkdir()
        (steer / "features_sae.jsonl").write_text("")
        recorded = f"elsewhere/sweep/layer{layer}/train/saes/topk"
        SteerabilitySummary(site=f"blocks.{layer}.resid_post", vocabulary_size=3, bases={"sae": BasisSummary.of([])},
                            model="m", images="folder", n_images=4, vocabulary="tokenizer", alpha=61.0,
                            alpha_relative=5.42, temperature=22.0, logit_scale=22.0, threshold=0.1, tokens="all",
                            config={"sae": recorded}).write(steer)
    for layer in (1, 2):
        sae_dir = run / f"layer{layer}" / "train" / "saes" / "topk"
        assert find_steering(run, sae_dir, f"blocks.{layer}.resid_post", 1) == run / f"layer{layer}" / "steerability"
    assert find_steering(run, run / "layer3" / "saes" / "topk", "blocks.3.resid_post", 1) is None


def test_thumbnails_are_refused_from_a_dataset_other_than_the_stores(tmp_path: Path) -> None:
    from clipsteer.report.commands import open_store_dataset

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with pytest.raises(ValueError, match="pass --dataset with the images the store was built from"):
        open_store_dataset(str(folder), "0123456789abcdef", None, tmp_path / "store", "clipsteer:toy_clip")
    with pytest.raises(FileNotFoundError, match="cannot open the images it was harvested from"):
        open_store_dataset(str(tmp_path / "gone"), "0123456789abcdef", None, tmp_path / "store", "clipsteer:toy_clip")


def test_quality_from_the_card_pass_when_a_run_has_no_evaluation(tmp_path: Path) -> None:
    from clipsteer.report.cards import CardPass
    from clipsteer.report.commands import quality_from_pass

    frequencies = np.array([0.0, 0.01, 0.1, 0.0])
    reconstruction = {"explained_variance": 0.9, "l0_patches": 3.0, "l0_cls": 2.0, "dead_fraction": 0.5}
    quality = quality_from_pass(CardPass([], frequencies, reconstruction, 7), tmp_path)
    assert (quality.explained_variance, quality.l0_cls, quality.dead_fraction) == (0.9, 2.0, 0.5)
    assert sum(quality.density_counts) == 2 and "no eval.json found" in quality.source
