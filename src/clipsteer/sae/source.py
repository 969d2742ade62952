"""Where training batches come from: the `BatchSource` protocol and an in-memory implementation.

A BatchSource yields an endless, deterministic stream of activation batches [tokens_per_batch, d_in] for a
seed. `start` skips the first `start` batches *without reading them*, so a resumed trainer continues the
exact stream an uninterrupted run would have seen. The on-disk activation store's shuffled loader
(`clipsteer.activations`) implements the same protocol.

A source may yield only its share of each batch (data-parallel training's `RankSlice`): it then has
`rows_per_batch(tokens_per_batch)` and a `parent`, the whole stream every rank shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from clipsteer.activations.background import in_background


@runtime_checkable
class BatchSource(Protocol):
    d_in: int
    """Width of every row."""

    def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        """Yield Tensor[tokens_per_batch, d_in] forever; deterministic for (tokens_per_batch, seed); skip `start` batches."""
        ...


def rows_per_batch(source: BatchSource, tokens_per_batch: int) -> int:
    """Rows `source` yields per batch of `tokens_per_batch` (all of them, unless it yields a rank's share)."""
    share = getattr(source, "rows_per_batch", None)
    return tokens_per_batch if share is None else int(share(tokens_per_batch))


def page_locked(batch: Tensor) -> Tensor:
    """A host batch copied into page-locked memory (one already on a device is returned as it is)."""
    return batch.pin_memory() if batch.device.type == "cpu" else batch


def pinned(stream: Iterator[Tensor], pin: Callable[[Tensor], Tensor] = page_locked) -> Iterator[Tensor]:
    """The batches of `stream`, each passed through `pin` in a background thread, up to two ahead.

    For a CUDA device: a copy from ordinary (pageable) host memory first waits for all GPU work queued before
    it (CUDA's rule for such copies), so the host stalls at every step and the device idles while the host
    queues the next one; from page-locked memory `.to(device, non_blocking=True)` is queued like a kernel.
    Close the result before `stream`.
    """
    return in_background(lambda: map(pin, stream), depth=2, name="clipsteer-pin")


def whole_stream(source: BatchSource) -> BatchSource:
    """The stream all ranks share: a rank slice's parent, or the source itself."""
    return getattr(source, "parent", source)


class TensorSource:
    """An in-memory BatchSource over the rows of `data` [n, d_in].

    Epoch e visits the rows in the order of a permutation drawn from a generator seeded with
    (seed, e); each epoch yields n // tokens_per_batch full batches (the remainder of the permutation is
    dropped, so every batch has exactly tokens_per_batch rows).
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

    def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        if tokens_per_batch <= 0 or start < 0:
            raise ValueError(f"TensorSource.batches: tokens_per_batch={tokens_per_batch}, start={start}; "
                             "expected tokens_per_batch > 0 and start >= 0")
        per_epoch = len(self) // tokens_per_batch
        if per_epoch == 0:
            raise ValueError(f"TensorSource.batches: tokens_per_batch={tokens_per_batch} is larger than the "
                             f"{len(self)} rows available")
        epoch, offset = divmod(start, per_epoch)
        while True:
            order = self._permutation(seed, epoch)
            for b in range(offset, per_epoch):
                yield self.data[order[b * tokens_per_batch:(b + 1) * tokens_per_batch]]
            epoch, offset = epoch + 1, 0
