"""Where training batches come from: the `BatchSource` protocol and an in-memory implementation.

A BatchSource yields an endless, deterministic stream of activation batches [batch_size, d_in] for a
seed. `start` skips the first `start` batches *without reading them*, so a resumed trainer continues the
exact stream an uninterrupted run would have seen. The on-disk activation store's shuffled loader
(`clipsteer.activations`) implements the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class BatchSource(Protocol):
    d_in: int
    """Width of every row."""

    def batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        """Yield Tensor[batch_size, d_in] forever; deterministic for (batch_size, seed); skip `start` batches."""
        ...


class TensorSource:
    """An in-memory BatchSource over the rows of `data` [n, d_in].

    Epoch e visits the rows in the order of a permutation drawn from a generator seeded with
    (seed, e); each epoch yields n // batch_size full batches (the remainder of the permutation is
    dropped, so every batch has exactly batch_size rows).
    """

    def __init__(self, data: Tensor) -> None:
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"TensorSource: expected a non-empty [n, d_in] tensor, got {tuple(data.shape)}")
        self.data = data
        self.d_in = int(data.shape[1])

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def _permutation(self, seed: int, epoch: int) -> Tensor:
        generator = torch.Generator().manual_seed((seed * 1_000_003 + epoch) % (2**63))
        return torch.randperm(len(self), generator=generator)

    def batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        if batch_size <= 0 or start < 0:
            raise ValueError(f"TensorSource.batches: batch_size={batch_size}, start={start}; "
                             "expected batch_size > 0 and start >= 0")
        per_epoch = len(self) // batch_size
        if per_epoch == 0:
            raise ValueError(f"TensorSource.batches: batch_size={batch_size} is larger than the "
                             f"{len(self)} rows available")
        epoch, offset = divmod(start, per_epoch)
        while True:
            order = self._permutation(seed, epoch)
            for b in range(offset, per_epoch):
                yield self.data[order[b * batch_size:(b + 1) * batch_size]]
            epoch, offset = epoch + 1, 0
