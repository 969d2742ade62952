"""ShuffledLoader: the training stream — every row once per epoch, in a seeded shuffled order.

Order of one epoch (a pure function of seed and epoch, so `start` can be computed, not replayed):
1. the shards are permuted (rng seeded by [seed, epoch, 0]) and laid end to end; that row sequence is
   cut into windows (the in-memory shuffle buffer). Windows hold `window_rows` rows (≈ `buffer_bytes`),
   except that the first ones of an epoch ramp up from `first_window_rows`, doubling: the stream can
   start after reading a few batches' worth of rows instead of a whole buffer;
2. each window is read sequentially (one piece of a shard at a time), the selected tokens kept, and
   its rows permuted (rng seeded by [seed, epoch, 1, window]) — scattered to their shuffled places as
   they are read, so serving a batch is a contiguous slice plus the conversion to float32;
3. the stream is epoch 0's windows, then epoch 1's, ... forever; batch k is stream rows
   [k·B, (k+1)·B), so batches stay full across window and epoch boundaries and each epoch's segment
   of the stream holds every selected row exactly once.
`batches(B, seed, start)` therefore jumps straight to window ⌊start·B⌋'s position: it loads only that
window and skips the rows before the start, with no I/O for anything earlier.
With `prefetch` (default), batches are made in a background thread (up to PREFETCH_BATCHES ahead)
and the next window is read in another while the current one is served (memory: two windows), so a
trainer's step overlaps all loader work. Without it, everything runs in the caller's thread.
Mixing: a window's rows come from a few shards (contiguous runs of images); the small ramp-up windows
mix fewer images than a full buffer, for the first few batches of each epoch only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from clipsteer.activations.background import in_background
from clipsteer.activations.format import BYTES_PER_VALUE, StoreError
from clipsteer.activations.selection import count_selected, plan_filter, selected_mask
from clipsteer.activations.store import ActivationStore

DEFAULT_BUFFER_BYTES = 512 * 2**20
DEFAULT_FIRST_WINDOW_ROWS = 16384   # 4 batches of 4096: reading them takes milliseconds
PREFETCH_BATCHES = 4

Piece = tuple[int, int, int]   # (shard, first row, end row) within that shard, raw (unselected) rows


@dataclass
class _Window:
    data: Tensor     # [n, d] in the store's dtype, already in stream order (row p = window row perm[p])
    pos: int = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos


class ShuffledLoader:
    """Implements the trainer's BatchSource: `batches(tokens_per_batch, seed, start=0)` and `d_in`."""

    def __init__(self, store: ActivationStore, tokens: str = "all", buffer_bytes: int = DEFAULT_BUFFER_BYTES,
                 prefetch: bool = True, first_window_rows: int = DEFAULT_FIRST_WINDOW_ROWS):
        if buffer_bytes <= 0 or first_window_rows <= 0:
            raise ValueError(f"ShuffledLoader: buffer_bytes={buffer_bytes} and first_window_rows={first_window_rows} "
                             "must be positive")
        self.store = store
        self.tokens = tokens
        self.filter = plan_filter(store.meta.spec, tokens, store.directory)
        self.d_in: int = store.d_model
        self.window_rows = max(1, buffer_bytes // (store.d_model * BYTES_PER_VALUE))
        self.first_window_rows = min(first_window_rows, self.window_rows)
        self.prefetch = prefetch
        self._verified: set[int] = set()   # shards whose checksum and finiteness were checked by this loader
        self.shard_rows = np.array([store.meta.shard_rows(i) for i in range(store.n_shards)], dtype=np.int64)
        self.shard_counts = np.array([self._count(i, 0, int(rows)) for i, rows in enumerate(self.shard_rows)],
                                     dtype=np.int64)
        self.n_rows: int = int(self.shard_counts.sum())   # rows per epoch
        if self.n_rows == 0:
            raise StoreError(f"{store.directory}: no rows with tokens={tokens!r}")
        if store.meta.nonfinite_images:   # fail now, not hours into training when the shard comes up
            for i in range(store.n_shards):
                store.check_finite(i)

    def __repr__(self) -> str:
        return (f"ShuffledLoader({self.store.directory}, tokens={self.tokens}, rows/epoch={self.n_rows}, "
                f"d_in={self.d_in}, window_rows={self.window_rows}, first_window_rows={self.first_window_rows})")

    def _count(self, shard: int, a: int, b: int) -> int:
        """Selected rows among rows [a, b) of `shard`."""
        start = self.store.shard_start(shard)
        return count_selected(self.store.meta.spec, self.filter, start + a, start + b)

    # ------------------------------------------------------------------ the epoch plan
    def windows(self, seed: int, epoch: int) -> list[list[Piece]]:
        """The pieces (shard, first row, end row) of each window of `epoch`, in stream order."""
        order = np.random.default_rng([seed, epoch, 0]).permutation(self.store.n_shards)
        windows: list[list[Piece]] = []
        current: list[Piece] = []
        size, room = self.first_window_rows, self.first_window_rows
        for shard in map(int, order):
            a, rows = 0, int(self.shard_rows[shard])
            while a < rows:
                b = min(rows, a + room)
                current.append((shard, a, b))
                room -= b - a
                a = b
                if room == 0:
                    windows.append(current)
                    size = min(2 * size, self.window_rows)
                    current, room = [], size
        if current:
            windows.append(current)
        return windows

    def _window_count(self, pieces: list[Piece]) -> int:
        return sum(self._count(*piece) for piece in pieces)

    def _load(self, seed: int, epoch: int, w: int, pieces: list[Piece]) -> _Window:
        """Read a window's pieces sequentially, scattering each row straight to its shuffled position:
        out[p] = rows[perm[p]], so serving the window is reading contiguous slices."""
        spec, store = self.store.meta.spec, self.store
        n = self._window_count(pieces)
        perm = np.random.default_rng([seed, epoch, 1, w]).permutation(n)
        destination = np.empty(n, dtype=np.int64)
        destination[perm] = np.arange(n)
        out = np.empty((n, self.d_in), dtype=np.uint16)
        filled = 0
        for i, a, b in pieces:
            start = store.shard_start(i)
            expected = store.expected_tokens(start + a, start + b)
            if not np.array_equal(store.shard_index(i)[a:b, 1], expected):
                raise StoreError(f"{store.directory}: shard {i}'s token indices disagree with the row layout "
                                 f"(first_token={spec.first_token}, T={spec.n_tokens_per_image}); the store is corrupt")
            if i not in self._verified:   # once per shard, when it is first read
                store.verify_shard(i)
                store.check_finite(i)
                self._verified.add(i)
            raw = store.shard_values(i)[a:b]
            mask = selected_mask(spec, self.filter, start + a, start + b)
            k = self._count(i, a, b)
            out[destination[filled:filled + k]] = raw if mask is None else raw[mask]
            filled += k
        assert filled == n
        return _Window(torch.from_numpy(out).view(store.torch_dtype))

    # ------------------------------------------------------------------ BatchSource
    def batches(self, tokens_per_batch: int, seed: int, start: int = 0) -> Iterator[Tensor]:
        """Endless float32 batches [tokens_per_batch, d_in]; batch k is the same for a given seed whatever `start`.

        start: skip the first `start` batches (arithmetic, no reading), for an exactly resumed trainer.
        """
        if tokens_per_batch <= 0 or start < 0 or seed < 0:
            raise ValueError(f"tokens_per_batch must be > 0, start ≥ 0 and seed ≥ 0 (got {tokens_per_batch}, {start}, {seed})")
        epoch, offset = divmod(start * tokens_per_batch, self.n_rows)
        if not self.prefetch:
            return self._stream(tokens_per_batch, seed, epoch, offset)
        return in_background(lambda: self._stream(tokens_per_batch, seed, epoch, offset), depth=PREFETCH_BATCHES,
                             name="clipsteer-batches")

    def _keys(self, seed: int, epoch: int, offset: int) -> Iterator[tuple[int, int, list[Piece], int]]:
        """(epoch, window, pieces, rows to skip) from the window holding `offset` of `epoch` onwards."""
        first = True
        while True:
            windows = self.windows(seed, epoch)
            ends = np.cumsum([self._window_count(pieces) for pieces in windows])
            w0 = int(np.searchsorted(ends, offset, side="right")) if first else 0
            for w in range(w0, len(windows)):
                skip = offset - (int(ends[w - 1]) if w else 0) if first else 0
                first = False
                yield epoch, w, windows[w], skip
            epoch += 1

    def _stream(self, tokens_per_batch: int, seed: int, epoch: int, offset: int) -> Iterator[Tensor]:
        keys = self._keys(seed, epoch, offset)

        def load_next() -> tuple[_Window, int]:
            e, w, pieces, skip = next(keys)
            return self._load(seed, e, w, pieces), skip

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clipsteer-loader") if self.prefetch else None

        def submit() -> Callable[[], tuple[_Window, int]]:
            """Start reading the next window (in the background when prefetching); call the result to get it."""
            return pool.submit(load_next).result if pool is not None else load_next

        try:
            pending = submit()
            current: _Window | None = None
            while True:
                parts = []
                need = tokens_per_batch
                while need:
                    if current is None or current.remaining == 0:
                        current, skip = pending()
                        current.pos = skip
                        pending = submit()
                        continue
                    take = min(need, current.remaining)
                    parts.append(current.data[current.pos:current.pos + take])
                    current.pos += take
                    need -= take
                batch = parts[0].float() if len(parts) == 1 else torch.cat(parts).float()
                assert batch.shape == (tokens_per_batch, self.d_in)
                yield batch
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
