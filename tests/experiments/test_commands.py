"""Whole `debias` and `typographic-defense` runs through the CLI on a Waterbirds-format folder with a
random-weight CLIP: the real-data path end to end, checked against numbers computed independently."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipsteer.cli import run_command
from clipsteer.data.labelled import open_labelled
from clipsteer.data.protocol import group_labels
from clipsteer.data.typographic import RenderedAttacks
from clipsteer.experiments.debias import DebiasResult
from clipsteer.experiments.typographic import TypographicResult
from clipsteer.models.backbone import Backbone
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.io import save_sae
from clipsteer.sae.model import SparseAutoencoder
from labelled_fixtures import write_waterbirds

TEMPLATE = "a photo of a {}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, world_geometry_model_dir: Path) -> dict:
    root = tmp_path_factory.mktemp("runs")
    saes = []
    for layer in (0, 1):
        torch.manual_seed(layer)
        sae = SparseAutoencoder(SAEConfig(d_in=32, d_sae=96, architecture="topk", k=8,
                                          site=f"blocks.{layer}.resid_post"))
        saes.append(str(save_sae(sae, root / f"sae{layer}")))
    return {"root": root, "model": str(world_geometry_model_dir), "saes": saes,
            "data": write_waterbirds(root / "waterbirds", {"train": 8, "val": 4, "test": 5})}


def zero_shot_predictions(model: str, images: list, classes: tuple[str, ...]) -> np.ndarray:
    backbone = Backbone.from_pretrained(model)
    head = backbone.zero_shot_head(list(classes), (TEMPLATE,))
    return backbone.zero_shot_logits(backbone.encode_image(backbone.pixels(images)), head).argmax(1).numpy()


def test_debias_end_to_end_on_a_waterbirds_folder(setup: dict) -> None:
    out = setup["root"] / "debias"
    result = run_command(["debias", "--saes", *setup["saes"], "--model", setup["model"], "--dataset",
                          f"waterbirds:{setup['data']}", "--out", str(out), "--templates", TEMPLATE,
                          "--selection.n-features", "1", "4", "--selection.max-target-information", "0.5",
                          "--spurious-templates", "a photo of {}"])
    assert DebiasResult.from_json(out / "result.json") == result
    assert {p.name for p in out.iterdir()} >= {"config.json", "result.json", "debias_layers.png",
                                               "features_0_blocks.0.resid_post.json"}
    # zero-shot on the test split, computed here without the experiment code
    test = open_labelled(f"waterbirds:{setup['data']}", "test")
    pred = zero_shot_predictions(setup["model"], [test.load(i) for i in range(len(test))], ("landbird", "waterbird"))
    correct = pred == test.labels()["label"]
    group = group_labels(test)[0]
    per_group = [correct[group == g].mean() for g in range(4)]
    assert result.zero_shot.report.wga == pytest.approx(min(per_group))
    assert result.zero_shot.report.avg == pytest.approx(correct.mean())
    assert result.zero_shot.report.avg_reweighted == pytest.approx(np.mean(per_group))  # train groups balanced
    for layer in result.layers:
        sae = layer.methods["sae"]
        assert sae.k in (0, 1, 4) and len(sae.features) == sae.k
        assert sae.choose.avg >= result.zero_shot.choose.avg - 0.03  # the choice rule held
        assert layer.curve[0][:2] == (0, "all") and layer.curve[0][2] == pytest.approx(result.zero_shot.choose.wga)
        assert set(layer.methods) == {"sae", "random", "neurons"}
        assert len(layer.methods["random"].report_draws) == 3
    assert result.orth_proj is not None and 0 <= result.orth_proj.report.wga <= 1
    details = json.loads((out / "features_1_blocks.1.resid_post.json").read_text())
    strengths = [f["spurious_strength"] for f in details["features"]]
    assert strengths == sorted(strengths, reverse=True) and all(f["target_information"] <= 0.5 for f in details["features"])
    assert details["suppressed"] == list(result.layers[1].methods["sae"].features)
    first = details["features"][0]
    assert set(first["top_concepts"]) == {"label", "spurious"} and len(first["top_images"]) == 8
    assert result.best_site in {"blocks.0.resid_post", "blocks.1.resid_post"}


def test_typographic_defense_end_to_end_on_a_waterbirds_folder(setup: dict) -> None:
    out = setup["root"] / "typographic"
    result = run_command(["typographic-defense", "--saes", setup["saes"][1], "--model", setup["model"],
                          "--dataset", f"waterbirds:{setup['data']}", "--out", str(out), "--templates", TEMPLATE,
                          "--selection.n-features", "2", "--selection.max-target-information", "0.5"])
    assert TypographicResult.from_json(out / "result.json") == result
    base = result.no_defense.report
    # two classes and a wrong word always: every attacked prediction is either the object or the word
    assert base.oca + base.tcr == pytest.approx(1.0)
    test = open_labelled(f"waterbirds:{setup['data']}", "test")
    attacked = RenderedAttacks(test, 64, "attacked", seed=300)
    pred = zero_shot_predictions(setup["model"], [attacked.load(i) for i in range(len(test))],
                                 ("landbird", "waterbird"))
    assert base.oca == pytest.approx((pred == test.labels()["label"]).mean())
    sae = result.layers[0].methods["sae"]
    assert sae.k in (0, 2) and sae.choose.clean_accuracy >= result.no_defense.choose.clean_accuracy - 0.02
    assert (out / "typographic_layers.png").is_file()
