"""The training stream: batch `step` holds pretraining images [step·B, (step+1)·B) of a seed, so a resumed
run sees exactly the batches it has not seen yet. Rendered in a DataLoader worker, off the training threads.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from clipsteer.world.config import WorldConfig
from clipsteer.world.distribution import pretraining_scene
from clipsteer.world.generate import render_indices
from clipsteer.world.toy_clip import tokenize, world_tokenizer


class PretrainingBatches(IterableDataset):
    """Yields (images uint8 [B, S, S, 3], input_ids int64 [B, L]) for steps start..stop-1."""

    def __init__(self, world_config: WorldConfig, seed: int, batch_size: int, start: int, stop: int) -> None:
        super().__init__()
        assert 0 <= start <= stop and batch_size > 0
        self.world_config, self.seed, self.batch_size, self.start, self.stop = world_config, seed, batch_size, start, stop

    def batch(self, step: int, tokenizer=None) -> tuple[torch.Tensor, torch.Tensor]:
        tokenizer = tokenizer or world_tokenizer()
        lo = step * self.batch_size
        b = render_indices(lambda i: pretraining_scene(self.seed, i, self.world_config), range(lo, lo + self.batch_size),
                           self.world_config)
        return torch.from_numpy(b.images), tokenize(tokenizer, b.captions)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        workers, wid = (1, 0) if info is None else (info.num_workers, info.id)
        torch.set_num_threads(1)
        tokenizer = world_tokenizer()
        for step in range(self.start + wid, self.stop, workers):
            yield self.batch(step, tokenizer)


def batch_loader(world_config: WorldConfig, seed: int, batch_size: int, start: int, stop: int, workers: int) -> DataLoader:
    """Batches in step order (DataLoader interleaves its workers round-robin, matching the split above)."""
    data = PretrainingBatches(world_config, seed, batch_size, start, stop)
    if workers == 0:
        return DataLoader(data, batch_size=None, num_workers=0)
    return DataLoader(data, batch_size=None, num_workers=workers, prefetch_factor=4, persistent_workers=False)
