"""Store format: round trip, metadata, and clear errors for damaged or foreign stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from activation_helpers import as_stored, make_spec, write_store

from clipsteer.activations import ActivationStore, StoreError, StoreMismatchError, StoreWriter
from clipsteer.activations.format import FORMAT_VERSION, PROGRESS_FILE, index_file, shard_file


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_round_trip(tmp_path: Path, dtype: str) -> None:
    spec = make_spec(dtype=dtype, n_images=10, shard_rows=7, images_per_batch=3)   # 9 images kept: 45 rows = 6 shards of 7 + 3
    rows = write_store(tmp_path / "s", spec, skip=(4,))
    store = ActivationStore.open(tmp_path / "s")
    assert store.n_rows == 45 and store.n_images == 9 and store.n_shards == 7 and store.d_model == 8
    assert store.torch_dtype == getattr(torch, dtype)
    torch.testing.assert_close(store.read(0, store.n_rows), as_stored(rows, dtype), rtol=0, atol=0)
    torch.testing.assert_close(store.read(5, 23), as_stored(rows[5:23], dtype), rtol=0, atol=0)  # across shards
    index = store.read_index(0, store.n_rows)
    np.testing.assert_array_equal(index[:, 0], rows[:, 0].numpy().astype(np.int32))
    np.testing.assert_array_equal(index[:, 1], np.tile(np.arange(5), 9))
    np.testing.assert_array_equal(store.image_indices(), [0, 1, 2, 3, 5, 6, 7, 8, 9])
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == sorted(
        ["metadata.json"] + [shard_file(i) for i in range(7)] + [index_file(i) for i in range(7)])
    assert (tmp_path / "s" / shard_file(6)).stat().st_size == 3 * 8 * 2


def test_metadata_contents(tmp_path: Path) -> None:
    spec = make_spec(n_images=6, images_per_batch=2)
    write_store(tmp_path / "s", spec, skip=(3,))
    meta = json.loads((tmp_path / "s" / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["complete"] is True
    assert meta["fingerprint"] == spec.fingerprint()
    for key, value in [("model_name", "fake"), ("model_revision", "r0"), ("site", "blocks.1.resid_post"),
                       ("tokens", "all"), ("dtype", "float16"), ("d_model", 8), ("n_tokens_per_image", 5),
                       ("n_rows", 25), ("n_images", 5), ("n_skipped", 1), ("dataset_fingerprint", "fp0")]:
        assert meta[key] == value, key
    assert meta["skipped"] == [{"index": 3, "name": "img3.png", "error": "corrupt"}]


def test_fingerprint_ignores_only_the_dataset_label() -> None:
    assert make_spec(dataset="a").fingerprint() == make_spec(dataset="b").fingerprint()
    assert make_spec().fingerprint() != make_spec(dataset_fingerprint="other").fingerprint()
    assert make_spec().fingerprint() != make_spec(site="blocks.2.resid_post").fingerprint()


def test_missing_metadata_names_the_file_and_child_stores(tmp_path: Path) -> None:
    write_store(tmp_path / "out" / "blocks.1.resid_post", make_spec())
    with pytest.raises(StoreError, match=r"metadata\.json not found.*blocks\.1\.resid_post"):
        ActivationStore.open(tmp_path / "out")
    with pytest.raises(StoreError, match="not a directory"):
        ActivationStore.open(tmp_path / "nope")


def test_truncated_shard(tmp_path: Path) -> None:
    write_store(tmp_path / "s", make_spec())
    shard = tmp_path / "s" / shard_file(2)
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(StoreError, match=r"shard_00002\.bin: truncated shard: 109 bytes, expected 112"):
        ActivationStore.open(tmp_path / "s")
    shard.unlink()
    with pytest.raises(StoreError, match=r"shard_00002\.bin: shard file missing"):
        ActivationStore.open(tmp_path / "s")


def test_wrong_format_version_and_bad_fields(tmp_path: Path) -> None:
    write_store(tmp_path / "s", make_spec())
    path = tmp_path / "s" / "metadata.json"
    original = json.loads(path.read_text())
    path.write_text(json.dumps({**original, "format_version": 99}))
    with pytest.raises(StoreError, match="format_version 99 is not supported"):
        ActivationStore.open(tmp_path / "s")
    path.write_text(json.dumps({**original, "d_model": "eight"}))
    with pytest.raises(StoreError, match="field 'd_model' expected int"):
        ActivationStore.open(tmp_path / "s")
    path.write_text(json.dumps({**original, "d_model": 16}))
    with pytest.raises(StoreError, match="fingerprint .* does not match"):
        ActivationStore.open(tmp_path / "s")
    path.write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        ActivationStore.open(tmp_path / "s")


def test_incomplete_store_is_refused_by_readers(tmp_path: Path) -> None:
    spec = make_spec(shard_rows=5)
    writer = StoreWriter.open(tmp_path / "s", spec)
    rows = torch.randn(15, 8)
    index = np.zeros((15, 2), dtype=np.int32)
    writer.add(0, rows, index, 0, 3, [])
    assert (tmp_path / "s" / PROGRESS_FILE).is_file()
    with pytest.raises(StoreError, match="incomplete store.*rerun the same `clipsteer harvest`"):
        ActivationStore.open(tmp_path / "s")


def test_writer_refuses_a_different_fingerprint_and_foreign_dirs(tmp_path: Path) -> None:
    spec = make_spec()
    writer = StoreWriter.open(tmp_path / "s", spec)
    writer.add(0, torch.randn(15, 8), np.zeros((15, 2), dtype=np.int32), 0, 3, [])   # partial store
    with pytest.raises(StoreMismatchError, match=r"refusing to append.*\n  tokens: 'all' vs 'patches'"):
        StoreWriter.open(tmp_path / "s", make_spec(tokens="patches"))
    with pytest.raises(StoreMismatchError, match="dataset_fingerprint: 'fp0' vs 'fp1'"):
        StoreWriter.open(tmp_path / "s", make_spec(dataset_fingerprint="fp1"))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hi")
    with pytest.raises(StoreError, match="not empty but has no metadata.json"):
        StoreWriter.open(tmp_path / "foreign", spec)


def test_writer_resumes_exactly_after_interruption(tmp_path: Path) -> None:
    """Stop feeding mid-way (as a kill would), reopen, feed from the recorded resume point."""
    spec = make_spec(n_images=10, shard_rows=7, images_per_batch=3)
    full = write_store(tmp_path / "ref", spec)
    t = spec.n_tokens_per_image
    writer = StoreWriter.open(tmp_path / "s", spec)
    for start in (0, 3):   # two chunks = 30 rows = 4 complete shards + 2 buffered rows (lost by the "kill")
        idx = np.arange(start, start + 3)
        writer.add(start * t, full[start * t:(start + 3) * t],
                   np.stack([np.repeat(idx, t), np.tile(np.arange(t), 3)], 1).astype(np.int32), start, start + 3, [])
    (tmp_path / "s" / "shard_00004.bin.tmp").write_bytes(b"partial")   # a write cut short
    del writer
    writer = StoreWriter.open(tmp_path / "s", spec)
    assert writer.progress.n_shards == 4 and writer.progress.resume_image == 3 and writer.progress.resume_row == 15
    assert not (tmp_path / "s" / "shard_00004.bin.tmp").exists()
    for start in range(3, 10, 3):
        end = min(start + 3, 10)
        idx = np.arange(start, end)
        writer.add(start * t, full[start * t:end * t],
                   np.stack([np.repeat(idx, t), np.tile(np.arange(t), end - start)], 1).astype(np.int32),
                   start, end, [])
    writer.finish(10, [])
    for name in sorted(p.name for p in (tmp_path / "ref").iterdir()):
        assert (tmp_path / "s" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
