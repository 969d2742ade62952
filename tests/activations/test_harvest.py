"""Harvest with a tiny random CLIP: rows equal Backbone.capture, skipped images listed, resume, refusal, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from activation_helpers import make_image_folder

from clipsteer.activations import ActivationStore, StoreMismatchError, open_ordered
from clipsteer.activations.format import PROGRESS_FILE
from clipsteer.activations.harvest import harvest_dataset
from clipsteer.activations.writer import StoreWriter
from clipsteer.cli import run_command
from clipsteer.data import ImageFolder

SITES = ["blocks.0.resid_post", "blocks.2.mlp_out"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs"), 11, corrupt=(3,))


def store_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_rows_equal_capture_and_unreadable_images_are_listed(backbone, images: Path, tmp_path: Path) -> None:
    ds = ImageFolder(images)
    dirs = harvest_dataset(backbone, ds, SITES, tmp_path, images_per_batch=4, shard_rows=10, progress=False)
    assert sorted(dirs) == SITES and dirs[SITES[0]] == tmp_path / SITES[0]
    readable = [i for i in range(len(ds)) if i != 3]
    expected = backbone.capture(backbone.pixels([ds.load(i) for i in readable]), SITES)
    for site in SITES:
        store = ActivationStore.open(tmp_path / site)
        meta = json.loads((tmp_path / site / "metadata.json").read_text())
        assert meta["n_images"] == 10 and meta["n_rows"] == 170 and meta["n_shards"] == 17
        assert meta["n_tokens_per_image"] == 17 and meta["d_model"] == 32 and meta["site"] == site
        assert meta["model_name"] == backbone.name and meta["model_revision"] == backbone.revision
        assert meta["dataset_fingerprint"] == ds.fingerprint()
        [skipped] = meta["skipped"]
        assert skipped["index"] == 3 and skipped["name"] == "img_003.png" and "img_003.png" in skipped["error"]
        assert not (tmp_path / site / PROGRESS_FILE).exists()
        loader = open_ordered(tmp_path / site)
        assert loader.image_indices.tolist() == readable
        _, acts = next(loader.batches(len(loader)))
        torch.testing.assert_close(acts, expected[site].half().float(), rtol=1e-3, atol=1e-3)
        index = store.read_index(0, store.n_rows)
        assert index[:, 0].tolist() == np.repeat(readable, 17).tolist()
        assert index[:, 1].tolist() == list(range(17)) * 10


def test_token_selection_at_harvest_equals_selection_on_read(backbone, images: Path, tmp_path: Path) -> None:
    ds = ImageFolder(images)
    site = "blocks.1.resid_post"
    for tokens in ("all", "cls", "patches"):
        harvest_dataset(backbone, ds, [site], tmp_path / tokens, tokens=tokens, images_per_batch=4, shard_rows=13,
                        progress=False)
    for tokens, width in (("cls", 1), ("patches", 16)):
        own = open_ordered(tmp_path / tokens / site)
        assert own.store.n_tokens_per_image == width and own.tokens_per_image == width
        from_all = open_ordered(tmp_path / "all" / site, tokens=tokens)
        assert torch.equal(next(own.batches(100))[1], next(from_all.batches(100))[1])
    assert open_ordered(tmp_path / "patches" / site).store.read_index(0, 16)[:, 1].tolist() == list(range(1, 17))


def test_complete_store_is_not_redone_and_a_different_harvest_is_refused(backbone, images: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ds = ImageFolder(images)
    harvest_dataset(backbone, ds, SITES[:1], tmp_path, images_per_batch=4, shard_rows=10, progress=False)
    before = store_bytes(tmp_path / SITES[0])
    harvest_dataset(backbone, ds, SITES[:1], tmp_path, images_per_batch=4, shard_rows=10, progress=False)
    assert "already complete; nothing to do" in capsys.readouterr().out
    assert store_bytes(tmp_path / SITES[0]) == before
    with pytest.raises(StoreMismatchError, match=r"n_images_requested: 11 vs 5"):
        harvest_dataset(backbone, ds, SITES[:1], tmp_path, images_per_batch=4, shard_rows=10, max_images=5, progress=False)
    with pytest.raises(StoreMismatchError, match=r"images_per_batch: 4 vs 2"):
        harvest_dataset(backbone, ds, SITES[:1], tmp_path, images_per_batch=2, shard_rows=10, progress=False)
    assert store_bytes(tmp_path / SITES[0]) == before


class Crash(RuntimeError):
    pass


def test_resume_when_sites_stopped_at_different_shards(backbone, images: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A kill between two sites' shard writes leaves one store a shard ahead; resume evens them out exactly."""
    ds = ImageFolder(images)
    kwargs = dict(images_per_batch=2, shard_rows=12, progress=False)
    harvest_dataset(backbone, ds, SITES, tmp_path / "ref", **kwargs)
    original = StoreWriter._write_shard
    calls = {"n": 0}

    def crash_on_fifth_shard_of_second_site(self, resume, skipped):
        if self.spec.site == SITES[1]:
            calls["n"] += 1
            if calls["n"] == 5:
                raise Crash("killed")
        return original(self, resume, skipped)

    monkeypatch.setattr(StoreWriter, "_write_shard", crash_on_fifth_shard_of_second_site)
    with pytest.raises(Crash):
        harvest_dataset(backbone, ds, SITES, tmp_path / "run", **kwargs)
    monkeypatch.setattr(StoreWriter, "_write_shard", original)
    progress = [json.loads((tmp_path / "run" / s / PROGRESS_FILE).read_text())["n_shards"] for s in SITES]
    assert progress[0] > progress[1] == 4   # the first site got ahead of the second
    harvest_dataset(backbone, ds, SITES, tmp_path / "run", **kwargs)
    for site in SITES:
        assert store_bytes(tmp_path / "run" / site) == store_bytes(tmp_path / "ref" / site), site


def test_cli(backbone, images: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    backbone.model.save_pretrained(ckpt)
    out = run_command(["harvest", "--model", str(ckpt), "--dataset", str(images), "--sites", "blocks.1.hook_resid_post",
                       "--out", str(tmp_path / "acts"), "--tokens", "cls", "--dtype", "bfloat16", "--max-images",
                       "6", "--images-per-batch", "4", "--workers", "0"])
    assert out == {"blocks.1.resid_post": tmp_path / "acts" / "blocks.1.resid_post"}
    store = ActivationStore.open(out["blocks.1.resid_post"])
    assert store.n_images == 5 and store.n_rows == 5 and store.torch_dtype == torch.bfloat16
    assert store.meta.spec.model_name == str(ckpt)
