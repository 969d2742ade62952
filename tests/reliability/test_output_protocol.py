"""The output protocol: files honour the umask, one writer per folder, complete-or-visibly-incomplete run
folders that never mix two configs, 16-bit and unusual image modes, NaN activations at harvest."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import SITE, Cli, make_images, one_line

from clipsteer.activations import ActivationStore
from clipsteer.activations.format import StoreIntegrityError
from clipsteer.activations.harvest import harvest_dataset
from clipsteer.data import ImageFolder
from clipsteer.data.folder import read_rgb, to_rgb
from clipsteer.errors import FolderLockedError
from clipsteer.models.testing import tiny_backbone
from clipsteer.run_folder import RunFolder, folder_lock
from clipsteer.sae.io import save_sae


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_honour_the_umask(umask: int, tmp_path: Path, sae_dir: Path) -> None:
    from clipsteer.sae.io import load_sae

    old = os.umask(umask)
    try:
        folder = save_sae(load_sae(sae_dir), tmp_path / "sae")
    finally:
        os.umask(old)
    assert mode(folder) == 0o777 & ~umask
    assert {mode(p) for p in folder.iterdir()} == {0o666 & ~umask}


def test_store_files_are_readable_by_the_group_under_umask_022(store: Path) -> None:
    assert {mode(p) & 0o044 for p in store.iterdir()} == {0o044}   # the session store was written under 022


def test_a_second_writer_is_refused_in_one_line(tmp_path: Path, cli: Cli, model_dir: Path, images: Path) -> None:
    out = tmp_path / "acts"
    with folder_lock(out, "harvest"):
        with pytest.raises(FolderLockedError, match="being written by clipsteer harvest"):
            with folder_lock(out, "harvest"):
                pass
        code, stderr = cli("harvest", "--sites", SITE, "--out", out, "--model", model_dir, "--dataset", images)
    line = one_line(stderr)
    assert code == 2 and str(out) in line and f"pid {os.getpid()}" in line
    assert sorted(p.name for p in out.iterdir()) == [".clipsteer.lock"]   # nothing was written
    with folder_lock(out, "harvest"):   # released with the holder
        pass


def test_run_folder_is_complete_only_through_its_result_and_never_mixes_configs(tmp_path: Path) -> None:
    def run(config: dict, rows: str, crash: bool = False) -> RunFolder:
        folder = RunFolder(tmp_path, "steerability", config, "summary.json")
        folder.begin()
        (tmp_path / rows).write_text(json.dumps(config))
        folder.wrote(tmp_path / rows)
        if not crash:
            (tmp_path / "summary.json").write_text("{}")
            folder.finish()
        return folder

    first = run({"alpha": 150}, "features_sae.jsonl")
    assert first.is_complete()
    second = run({"alpha": 150}, "features_sae.jsonl", crash=True)   # same config, interrupted
    assert not second.is_complete() and not (tmp_path / "summary.json").exists()
    third = run({"alpha": 10}, "features_neurons.jsonl", crash=True)   # other config, interrupted
    assert not third.is_complete() and not (tmp_path / "features_sae.jsonl").exists()   # old rows removed first
    record = json.loads(third.record_path.read_text())
    assert record["complete"] is False and record["outputs"] == ["features_neurons.jsonl"]
    assert run({"alpha": 10}, "features_neurons.jsonl").is_complete()


def test_steerability_rerun_with_another_alpha_starts_clean(tmp_path: Path, cli: Cli, sae_dir: Path,
                                                            model_dir: Path, images: Path) -> None:
    base = ["steerability", "--out", tmp_path / "s", "--sae", sae_dir, "--model", model_dir, "--images", images,
            "--n-images", "4", "--vocab-size", "8",]
    assert cli(*base, "--bases", "sae", "neurons")[0] == 0
    assert (tmp_path / "s" / "features_neurons.jsonl").is_file()
    assert cli(*base, "--bases", "sae", "--alpha", "10")[0] == 0
    names = sorted(p.name for p in (tmp_path / "s").iterdir() if not p.name.startswith("."))
    assert "features_neurons.jsonl" not in names   # the other run's rows are gone, not mixed in
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["config"]["alpha"] == 10 and "neurons" not in summary
    assert RunFolder(tmp_path / "s", "steerability", json.loads(
        (tmp_path / "s" / "steerability.run.json").read_text())["config"], "summary.json").is_complete()


def test_sixteen_bit_and_unusual_modes_convert_by_value(tmp_path: Path) -> None:
    ramp = (np.arange(16 * 16).reshape(16, 16) * 256).astype(np.uint16)   # 0 .. 65280
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    rgb = np.asarray(read_rgb(tmp_path / "g16.png")).astype(int)
    assert np.abs(rgb[..., 0] - ramp / 257).max() <= 0.5 and (rgb == 255).mean() < 0.01   # not clipped to white
    colour = Image.new("RGB", (4, 4), (200, 100, 50))
    for converted in ("P", "CMYK", "RGBA"):
        assert np.abs(np.asarray(to_rgb(colour.convert(converted))).astype(int) - (200, 100, 50)).max() <= 8
    grey_alpha = Image.new("LA", (4, 4), (80, 0))   # fully transparent → composited on white
    assert (np.asarray(to_rgb(grey_alpha)) == 255).all()
    with pytest.raises(ValueError, match="floating-point images"):
        to_rgb(Image.new("F", (4, 4), 0.5))


@pytest.fixture(scope="module")
def nan_backbone():
    backbone = tiny_backbone(seed=0)
    with torch.no_grad():   # NaN in one layer-1 weight: every token's resid_post becomes NaN
        backbone.model.vision_model.encoder.layers[1].mlp.fc2.bias[0] = float("nan")
    return backbone


def test_nonfinite_activations_are_refused_or_recorded_then_named_at_training(tmp_path: Path, nan_backbone) -> None:
    images = ImageFolder(make_images(tmp_path / "imgs", 4))
    settings = dict(images_per_batch=2, shard_rows=17, workers=0, progress=False)
    with pytest.raises(StoreIntegrityError, match=r"non-finite activations .* images \[0, 1\].*--nonfinite record"):
        harvest_dataset(nan_backbone, images, [SITE], tmp_path / "refused", **settings)
    harvest_dataset(nan_backbone, images, [SITE], tmp_path / "recorded", nonfinite="record", **settings)
    store = ActivationStore.open(tmp_path / "recorded" / SITE)
    assert store.meta.nonfinite_images == (0, 1, 2, 3)
    from clipsteer.activations.loaders import open_shuffled
    with pytest.raises(StoreIntegrityError, match=r"shard_00000.bin: 17 rows hold NaN/inf .*--nonfinite record"):
        open_shuffled(store.directory)
