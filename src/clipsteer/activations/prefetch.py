"""Decode and preprocess images in background threads, chunk by chunk, in dataset order.

A chunk is the dataset index range [start, end) of one forward batch; unreadable images are left out
of the chunk's pixels and reported as SkippedImage. At most `2 × workers` chunks are in flight, so
memory stays bounded whatever the dataset size. (Threads, not processes: PIL releases the GIL while
decoding and resizing, and threads need no pickling of the dataset.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image
from torch import Tensor

from clipsteer.activations.format import SkippedImage
from clipsteer.data import ImageDataset, ImageReadError, image_name

Preprocess = Callable[[Sequence[Image.Image]], Tensor]   # images → float32 [b, 3, S, S]


@dataclass(frozen=True)
class ImageChunk:
    start: int
    end: int
    indices: np.ndarray              # int64 [b]: dataset indices of the readable images
    pixels: Tensor | None            # float32 [b, 3, S, S]; None when b == 0
    skipped: tuple[SkippedImage, ...]

    def __post_init__(self) -> None:
        b = len(self.indices)
        assert (self.pixels is None) == (b == 0) and (self.pixels is None or self.pixels.shape[0] == b)
        assert b + len(self.skipped) == self.end - self.start


def read_chunk(dataset: ImageDataset, start: int, end: int, preprocess: Preprocess) -> ImageChunk:
    images, kept, skipped = [], [], []
    for i in range(start, end):
        try:
            images.append(dataset.load(i))
            kept.append(i)
        except ImageReadError as err:
            skipped.append(SkippedImage(i, image_name(dataset, i), str(err)))
    pixels = preprocess(images) if images else None
    return ImageChunk(start, end, np.array(kept, dtype=np.int64), pixels, tuple(skipped))


def iter_chunks(dataset: ImageDataset, start: int, stop: int, images_per_batch: int, preprocess: Preprocess,
                workers: int = 2) -> Iterator[ImageChunk]:
    """Chunks [start, start + B), [start + B, start + 2B), ... up to `stop`, in order."""
    bounds = [(a, min(a + images_per_batch, stop)) for a in range(start, stop, images_per_batch)]
    if workers <= 0:
        for a, b in bounds:
            yield read_chunk(dataset, a, b, preprocess)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipsteer-decode")
    todo = iter(bounds)
    pending: deque[Future[ImageChunk]] = deque()

    def submit_next() -> None:
        nxt = next(todo, None)
        if nxt is not None:
            pending.append(pool.submit(read_chunk, dataset, nxt[0], nxt[1], preprocess))

    try:
        for _ in range(2 * workers):
            submit_next()
        while pending:
            chunk = pending.popleft().result()
            submit_next()
            yield chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
