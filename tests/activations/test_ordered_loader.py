"""Ordered loader: per-image rows in harvest order, token selection, positions of skipped images."""

from __future__ import annotations

import pytest
import torch
from activation_helpers import as_stored

from clipsteer.activations import open_ordered


def test_images_and_batches(store_factory) -> None:
    directory, rows, spec = store_factory(n_images=9, shard_rows=4, images_per_batch=2, skip=(2, 7))
    loader = open_ordered(directory)
    assert len(loader) == 7 and loader.tokens_per_image == 5
    per_image = as_stored(rows).view(7, 5, 8)
    seen = list(loader)
    assert [i for i, _ in seen] == [0, 1, 3, 4, 5, 6, 8]
    for k, (_, acts) in enumerate(seen):
        assert acts.shape == (5, 8) and acts.dtype == torch.float32
        torch.testing.assert_close(acts, per_image[k], rtol=0, atol=0)
    indices, acts = next(loader.batches(3, start=2))
    assert indices.tolist() == [3, 4, 5] and acts.shape == (3, 5, 8)
    torch.testing.assert_close(acts, per_image[2:5], rtol=0, atol=0)
    assert [len(i) for i, _ in loader.batches(3)] == [3, 3, 1]
    assert loader.position(8) == 6
    with pytest.raises(KeyError, match="dataset image 7 is not in the store"):
        loader.position(7)


@pytest.mark.parametrize("tokens,sl", [("cls", slice(0, 1)), ("patches", slice(1, 5))])
def test_token_selection(store_factory, tokens: str, sl: slice) -> None:
    directory, rows, _ = store_factory(n_images=6, shard_rows=7, images_per_batch=4)
    loader = open_ordered(directory, tokens=tokens)
    assert loader.tokens_per_image == sl.stop - sl.start
    _, acts = next(loader.batches(6))
    torch.testing.assert_close(acts, as_stored(rows).view(6, 5, 8)[:, sl], rtol=0, atol=0)
    assert acts[:, :, 1].unique().tolist() == list(range(sl.start, sl.stop))   # token_index label column


def test_patch_store_keeps_model_token_indices(store_factory) -> None:
    directory, _, spec = store_factory(tokens="patches", n_images=4)
    assert spec.first_token == 1 and spec.n_tokens_per_image == 4
    loader = open_ordered(directory, tokens="patches")
    acts = loader.image(0)
    assert acts[:, 1].tolist() == [1, 2, 3, 4]
    assert loader.store.read_index(0, 4)[:, 1].tolist() == [1, 2, 3, 4]
