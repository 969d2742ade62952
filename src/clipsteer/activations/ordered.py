"""OrderedLoader: a store's activations per image, in harvest order (for inspection and evaluation)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from clipsteer.activations.selection import plan_filter, select_image_tokens
from clipsteer.activations.store import ActivationStore

READ_ROWS = 1 << 16   # rows per sequential read when iterating image by image


class OrderedLoader:
    """Harvested image k (dataset index `image_indices[k]`) owns store rows [k·T, (k+1)·T).

    Yields float32 tensors with the requested tokens: T' = T (all), 1 (cls) or T − 1 (patches).
    """

    def __init__(self, store: ActivationStore, tokens: str = "all"):
        self.store = store
        self.tokens = tokens
        self.filter = plan_filter(store.meta.spec, tokens, store.directory)
        self.d_in: int = store.d_model
        t = store.n_tokens_per_image
        self.tokens_per_image: int = t if self.filter is None else (1 if self.filter == "cls" else t - 1)
        self._image_indices: np.ndarray | None = None

    def __len__(self) -> int:
        return self.store.n_images

    def __repr__(self) -> str:
        return (f"OrderedLoader({self.store.directory}, tokens={self.tokens}, images={len(self)}, "
                f"tokens/image={self.tokens_per_image}, d_in={self.d_in})")

    @property
    def image_indices(self) -> np.ndarray:
        """Dataset index of each harvested image, int64 [n_images], ascending (skipped images are absent)."""
        if self._image_indices is None:
            self._image_indices = self.store.image_indices()
        return self._image_indices

    def position(self, dataset_index: int) -> int:
        """Harvest position k of a dataset image; KeyError if it was skipped or not harvested."""
        k = int(np.searchsorted(self.image_indices, dataset_index))
        if k == len(self) or self.image_indices[k] != dataset_index:
            raise KeyError(f"{self.store.directory}: dataset image {dataset_index} is not in the store "
                           f"(skipped as unreadable, or beyond max_images)")
        return k

    def image(self, k: int) -> Tensor:
        """Activations of harvested image k: float32 [T', d]."""
        if not 0 <= k < len(self):
            raise IndexError(f"image position {k} out of range 0..{len(self) - 1}")
        return self.batch(k, k + 1)[0]

    def batch(self, start: int, stop: int) -> Tensor:
        """Harvested images [start, stop) as float32 [stop − start, T', d] (one sequential read)."""
        t = self.store.n_tokens_per_image
        rows = self.store.read(start * t, stop * t).view(stop - start, t, self.d_in)
        return select_image_tokens(rows, self.store.meta.spec, self.filter)

    def batches(self, images_per_batch: int, start: int = 0, stop: int | None = None
                ) -> Iterator[tuple[Tensor, Tensor]]:
        """(dataset indices int64 [n], activations float32 [n, T', d]) for harvested images [start, stop)."""
        if images_per_batch <= 0:
            raise ValueError(f"images_per_batch must be positive, got {images_per_batch}")
        stop = len(self) if stop is None else min(stop, len(self))
        for a in range(start, stop, images_per_batch):
            b = min(a + images_per_batch, stop)
            yield torch.from_numpy(self.image_indices[a:b].copy()), self.batch(a, b)

    def images(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, Tensor]]:
        """(dataset index, activations float32 [T', d]) per harvested image, in order."""
        per_read = max(1, READ_ROWS // self.store.n_tokens_per_image)
        for indices, acts in self.batches(per_read, start, stop):
            for j in range(len(indices)):
                yield int(indices[j]), acts[j]

    def __iter__(self) -> Iterator[tuple[int, Tensor]]:
        return self.images()
