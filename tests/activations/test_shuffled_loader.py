"""Shuffled loader: each row once per epoch, deterministic per seed, `start` = dropping batches, token selection."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest
import torch
from activation_helpers import as_stored

from clipsteer.activations import StoreError, check_d_in, open_shuffled


def row_ids(batch: torch.Tensor) -> list[tuple[int, int]]:
    """(image_index, token_index) labels carried in columns 0 and 1."""
    return [tuple(r) for r in batch[:, :2].round().long().tolist()]


def take(source, n_batches: int, tokens_per_batch: int, seed: int, start: int = 0) -> list[torch.Tensor]:
    return list(islice(source.batches(tokens_per_batch, seed, start), n_batches))


@pytest.mark.parametrize("tokens", ["all", "cls", "patches"])
def test_every_row_once_per_epoch(store_factory, tokens: str) -> None:
    # 40 images × 5 tokens = 200 rows in 23 shards of 9 (last 2); windows ramp 3, 6, 12, 18, 18, ... rows.
    directory, rows, spec = store_factory(n_images=40, shard_rows=9, images_per_batch=4, skip=(6,))
    source = open_shuffled(directory, tokens=tokens, buffer_bytes=2 * 9 * 8 * 2, first_window_rows=3)
    assert source.window_rows == 18 and source.d_in == 8
    sizes = [sum(b - a for _, a, b in pieces) for pieces in source.windows(5, 0)]
    assert sizes[:4] == [3, 6, 12, 18] and sum(sizes) == len(rows) and max(sizes) == 18
    expected_ids = sorted(row_ids(rows))
    if tokens == "cls":
        expected_ids = [r for r in expected_ids if r[1] == 0]
    elif tokens == "patches":
        expected_ids = [r for r in expected_ids if r[1] > 0]
    n = len(expected_ids)
    assert source.n_rows == n
    tokens_per_batch = 7                                    # does not divide n: batches straddle epochs
    n_epochs = 3
    batches = take(source, -(-n * n_epochs // tokens_per_batch), tokens_per_batch, seed=5)
    assert all(b.shape == (tokens_per_batch, 8) and b.dtype == torch.float32 for b in batches)
    stream = torch.cat(batches)
    by_id = {ids: r for ids, r in zip(row_ids(rows), as_stored(rows), strict=True)}
    epochs = [stream[e * n:(e + 1) * n] for e in range(n_epochs)]
    for epoch in epochs:
        assert sorted(row_ids(epoch)) == expected_ids          # a permutation of the selected rows
        for ids, r in zip(row_ids(epoch[:50]), epoch[:50], strict=True):
            torch.testing.assert_close(r, by_id[ids], rtol=0, atol=0)   # values travel with their labels
    assert row_ids(epochs[0]) != row_ids(epochs[1])           # a new permutation each epoch
    assert row_ids(epochs[0]) != expected_ids                  # actually shuffled


def test_deterministic_per_seed_and_start_equals_dropping(store_factory) -> None:
    directory, _, _ = store_factory(n_images=30, shard_rows=11, images_per_batch=5)
    source = open_shuffled(directory, buffer_bytes=3 * 11 * 8 * 2)
    reference = take(source, 60, 8, seed=3)                   # 480 rows = 3.2 epochs of 150
    again = take(open_shuffled(directory, buffer_bytes=3 * 11 * 8 * 2, prefetch=False), 60, 8, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(reference, again, strict=True))
    other = take(source, 60, 8, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(reference, other, strict=True))
    for start in (1, 7, 18, 19, 37, 55):                      # mid-window, window and epoch boundaries
        resumed = take(source, 60 - start, 8, seed=3, start=start)
        assert all(torch.equal(a, b) for a, b in zip(reference[start:], resumed, strict=True)), start
    ramped = open_shuffled(directory, buffer_bytes=3 * 11 * 8 * 2, first_window_rows=5)  # windows 5, 10, 20, 33, ...
    ramp_reference = take(ramped, 60, 8, seed=3)
    for start in (0, 1, 2, 4, 19, 37):
        resumed = take(ramped, 60 - start, 8, seed=3, start=start)
        assert all(torch.equal(a, b) for a, b in zip(ramp_reference[start:], resumed, strict=True)), start


def test_whole_store_in_one_window_is_a_full_shuffle(store_factory) -> None:
    directory, rows, _ = store_factory(n_images=12, shard_rows=8, images_per_batch=4)
    source = open_shuffled(directory, first_window_rows=10**6)  # no ramp: default buffer ≫ store
    assert len(source.windows(0, 0)) == 1
    first = torch.cat(take(source, 6, 10, seed=0))
    positions = {ids: i for i, ids in enumerate(row_ids(rows))}
    order = np.array([positions[ids] for ids in row_ids(first)])
    assert abs(np.corrcoef(order, np.arange(len(order)))[0, 1]) < 0.5


def test_token_selection_errors_and_d_in_check(store_factory) -> None:
    directory, _, _ = store_factory(tokens="cls", n_images=6)
    assert open_shuffled(directory, tokens="all").n_rows == 6
    assert open_shuffled(directory, tokens="cls").n_rows == 6
    with pytest.raises(StoreError, match="holds only 'cls' tokens.*cannot serve tokens='patches'"):
        open_shuffled(directory, tokens="patches")
    with pytest.raises(ValueError, match="tokens='both'"):
        open_shuffled(directory, tokens="both")
    source = open_shuffled(directory)
    check_d_in(source, 8)
    with pytest.raises(ValueError, match=r"d_model=8 .*expects d_in=768"):
        check_d_in(source, 768)
    with pytest.raises(ValueError, match="tokens_per_batch must be > 0"):
        next(source.batches(0, seed=0))


def test_producer_errors_reach_the_consumer_and_threads_stop(store_factory) -> None:
    import threading

    from clipsteer.activations.format import index_file

    def loader_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("clipsteer-") and t.is_alive()]

    directory, _, _ = store_factory(n_images=20, shard_rows=9)
    stream = open_shuffled(directory, buffer_bytes=9 * 8 * 2).batches(4, seed=0)
    next(stream)
    assert loader_threads()
    stream.close()
    assert not loader_threads()
    path = directory / index_file(1)
    index = np.fromfile(path, dtype="<i4").reshape(-1, 2)
    index[:, 1] = 0
    index.tofile(path)
    with pytest.raises(StoreError, match="shard 1's token indices disagree with the row layout"):
        list(islice(open_shuffled(directory, buffer_bytes=9 * 8 * 2).batches(4, seed=0), 100))
    assert not loader_threads()


def test_implements_the_trainers_batch_source_protocol(store_factory) -> None:
    source_module = pytest.importorskip("clipsteer.sae.source")
    directory, _, spec = store_factory(n_images=4)
    source = open_shuffled(directory)
    assert isinstance(source, source_module.BatchSource) and source.d_in == spec.d_model
    assert source.store.meta.spec.site == spec.site and source.store.meta.spec.model_name == spec.model_name
