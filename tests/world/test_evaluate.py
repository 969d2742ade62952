"""`world evaluate` / `world show` on a tiny freshly trained checkpoint, and the metric functions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipsteer.world.config import WorldConfig
from clipsteer.world.configs import ToyClipArch, TrainClipConfig
from clipsteer.world.dataset import WorldDataset
from clipsteer.world.evalsets import group_names, groups_of, scene_maker
from clipsteer.world.train import train_clip

TINY = ToyClipArch(vision_width=32, vision_layers=1, text_width=32, text_layers=1, heads=2, mlp_ratio=2,
                   projection_dim=16)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_clip")
    return train_clip(TrainClipConfig(out=out, steps=3, batch_size=16, warmup=1, threads=1, workers=0, bf16=False,
                                      probe_every=0, arch=TINY))


def test_evaluate_prints_one_json_object(tiny_checkpoint, capsys):
    from clipsteer.cli import run_command

    run_command(["world", "evaluate", "--checkpoint", str(tiny_checkpoint), "--json", "--split", "val",
          "--n-zero-shot", "16", "--n-group", "16", "--n-typographic", "16"])
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["zero_shot_accuracy"] <= 1
    for task in ("background_task", "attribute_task"):
        assert set(result[task]) == {"wga", "avg", "groups", "counts"} and len(result[task]["groups"]) == 4
        assert result[task]["wga"] == min(result[task]["groups"].values())
        assert result[task]["wga"] <= result[task]["avg"]
    assert set(result["typographic"]) == {"clean_accuracy", "attacked_accuracy", "text_capture_rate",
                                          "blank_accuracy", "blank_capture_rate"}


def test_show_writes_a_png(tmp_path):
    from PIL import Image

    from clipsteer.cli import run_command

    out = tmp_path / "grid.png"
    run_command(["world", "show", "--out", str(out), "--task", "typographic", "--n", "4", "--columns", "2"])
    assert Image.open(out).size[0] > 3 * 64 * 3


def test_group_sets_are_balanced_and_splits_are_held_out():
    for task in ("background", "attribute"):
        batch = WorldDataset(task, "test", n=40).arrays()
        label, group = groups_of(task, batch.labels)
        assert np.array_equal(group, np.arange(40) % 4) and len(group_names(task)) == 4
        assert (batch.labels["word"] == -1).all()
    a = WorldDataset("zero_shot", "val", n=8).arrays().images
    b = WorldDataset("zero_shot", "test", n=8).arrays().images
    assert not np.array_equal(a, b)


def test_typographic_variants_share_the_scene():
    cfg = WorldConfig()
    for i in range(8):
        v = scene_maker("typographic", "val", cfg)(i)
        assert v["attacked"].word not in (None, v["attacked"].shape)
        assert v["clean"].text is None and v["blank"].word is None and v["blank"].text.note
        assert v["clean"].shape == v["attacked"].shape and v["clean"].cx == v["attacked"].cx
    imgs = {k: WorldDataset("typographic", "val", k, n=8).arrays() for k in ("clean", "attacked", "blank")}
    note = imgs["attacked"].patch_counts[:, 2:].sum(1) > 0  # note or word patches
    outside = ~note[:, :, None, :, None].repeat(8, 2).repeat(8, 4).reshape(8, 64, 64)
    for k in ("attacked", "blank"):
        assert (imgs[k].images == imgs["clean"].images)[outside].all(), "variants differ only under the note"
