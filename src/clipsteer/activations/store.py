"""ActivationStore: read-only access to a complete store directory (validated on open)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clipsteer.activations.format import (
    INDEX_DTYPE,
    PROGRESS_FILE,
    VALUE_DTYPE,
    StoreError,
    StoreIntegrityError,
    StoreMetadata,
    file_sha256,
    read_metadata,
)


class ActivationStore:
    """A complete, immutable store. Shards are memory-mapped lazily; nothing is read until asked."""

    def __init__(self, directory: Path, meta: StoreMetadata):
        self.directory = directory
        self.meta = meta
        self._values: dict[int, np.memmap] = {}
        self._index: dict[int, np.memmap] = {}
        self._starts = np.array([shard.start for shard in meta.shards], dtype=np.int64)

    @classmethod
    def open(cls, directory: str | Path) -> ActivationStore:
        """Validate and open. Errors name the file and what was expected: a missing metadata.json, an
        interrupted harvest, an unsupported format_version, a missing or truncated shard."""
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            raise StoreError(f"activation store not found: {directory} is not a directory")
        meta = read_metadata(directory)
        if not meta.complete:
            resumable = (directory / PROGRESS_FILE).is_file()
            raise StoreError(f"{directory} is an incomplete store: its harvest was interrupted"
                             f"{' (progress.json present)' if resumable else ''}; rerun the same `clipsteer "
                             f"harvest` command to resume it")
        store = cls(directory, meta)
        for shard in meta.shards:
            store._check_file(shard.values, shard.rows * meta.spec.d_model * VALUE_DTYPE.itemsize,
                              f"{shard.rows} rows × d_model {meta.spec.d_model} × 2 bytes")
            store._check_file(shard.index, shard.rows * 2 * INDEX_DTYPE.itemsize, f"{shard.rows} rows × 2 int32")
        return store

    def _check_file(self, name: str, expected: int, what: str) -> None:
        path = self.directory / name
        if not path.is_file():
            raise StoreError(f"{path}: shard file missing (metadata.json lists {self.meta.n_shards} shards)")
        size = path.stat().st_size
        if size != expected:
            kind = "truncated" if size < expected else "oversized"
            raise StoreError(f"{path}: {kind} shard: {size} bytes, expected {expected} ({what})")

    # ------------------------------------------------------------------ integrity
    def verify_shard(self, i: int) -> None:
        """Hash shard i's two files against metadata.json (a no-op for stores written without checksums)."""
        if self.meta.shard_checksums is None:
            return
        shard = self.meta.shards[i]
        for name, expected in zip((shard.values, shard.index), self.meta.shard_checksums[i], strict=True):
            got = file_sha256(self.directory / name)
            if got != expected:
                raise StoreIntegrityError(f"{self.directory / name}: checksum mismatch (SHA-256 {got[:12]}…, "
                                          f"metadata.json records {expected[:12]}…): the shard was modified or "
                                          f"corrupted; harvest {self.directory} again")

    def nonfinite_rows(self, i: int, raw: np.ndarray | None = None) -> np.ndarray:
        """Bool [rows] of shard i (or of `raw`, rows of it): which rows hold a NaN or inf.

        Read from the bit patterns (exponent all ones), so it costs one pass and no float conversion."""
        raw = self.shard_values(i) if raw is None else raw
        exponent = np.uint16(0x7C00 if self.meta.spec.dtype == "float16" else 0x7F80)
        return ((np.asarray(raw) & exponent) == exponent).any(axis=1)

    def check_finite(self, i: int) -> None:
        """Raise StoreIntegrityError naming the store, the shard and the images when shard i holds NaN/inf."""
        bad = self.nonfinite_rows(i)
        if bad.any():
            images = sorted({int(j) for j in np.asarray(self.shard_index(i))[bad, 0]})
            recorded = " (harvested with --nonfinite record)" if self.meta.nonfinite_images else ""
            raise StoreIntegrityError(
                f"{self.directory / self.meta.shards[i].values}: {int(bad.sum())} rows hold NaN/inf (images "
                f"{images[:5]}{' ...' if len(images) > 5 else ''}){recorded}; an SAE cannot train on them: "
                f"harvest {self.directory} again without those images")

    def __repr__(self) -> str:
        s = self.meta.spec
        return (f"ActivationStore({str(self.directory)!r}, site={s.site}, tokens={s.tokens}, rows={self.n_rows}, "
                f"d_model={s.d_model}, {s.dtype})")

    # ------------------------------------------------------------------ shape
    @property
    def d_model(self) -> int:
        return self.meta.spec.d_model

    @property
    def n_rows(self) -> int:
        return self.meta.n_rows

    @property
    def n_images(self) -> int:
        return self.meta.n_images

    @property
    def n_shards(self) -> int:
        return self.meta.n_shards

    @property
    def n_tokens_per_image(self) -> int:
        return self.meta.spec.n_tokens_per_image

    @property
    def torch_dtype(self) -> torch.dtype:
        return self.meta.torch_dtype

    def shard_start(self, i: int) -> int:
        """Global row index of shard i's first row."""
        return self.meta.shard_start(i)

    def shard_of(self, row: int) -> int:
        """The shard holding global row `row`."""
        return int(np.searchsorted(self._starts, row, side="right")) - 1

    # ------------------------------------------------------------------ raw access
    def shard_values(self, i: int) -> np.memmap:
        """Raw 16-bit patterns of shard i, [rows, d_model] (use `as_tensor` to reinterpret)."""
        if i not in self._values:
            rows = self.meta.shard_rows(i)
            self._values[i] = np.memmap(self.directory / self.meta.shards[i].values, dtype=VALUE_DTYPE, mode="r",
                                        shape=(rows, self.d_model))
        return self._values[i]

    def shard_index(self, i: int) -> np.memmap:
        """(image_index, token_index) of shard i's rows, int32 [rows, 2]."""
        if i not in self._index:
            rows = self.meta.shard_rows(i)
            self._index[i] = np.memmap(self.directory / self.meta.shards[i].index, dtype=INDEX_DTYPE, mode="r",
                                       shape=(rows, 2))
        return self._index[i]

    def as_tensor(self, raw: np.ndarray) -> Tensor:
        """Raw uint16 rows (a copy owned by the caller) → a tensor of the store's dtype, no copy."""
        return torch.from_numpy(np.ascontiguousarray(raw, dtype=np.uint16)).view(self.torch_dtype)

    def expected_tokens(self, start: int, stop: int) -> np.ndarray:
        """token_index of global rows [start, stop) implied by the row layout."""
        spec = self.meta.spec
        return (spec.first_token + np.arange(start, stop) % spec.n_tokens_per_image).astype(np.int32)

    def read(self, start: int, stop: int) -> Tensor:
        """Rows [start, stop) (across shards) as float32 [stop − start, d_model]."""
        return self.read_raw(start, stop).float()

    def read_raw(self, start: int, stop: int) -> Tensor:
        """Rows [start, stop) in the store's dtype (fp16/bf16) [stop − start, d_model]."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"{self.directory}: rows [{start}, {stop}) out of range [0, {self.n_rows})")
        out = np.empty((stop - start, self.d_model), dtype=np.uint16)
        row = start
        while row < stop:
            i = self.shard_of(row)
            first = self.shard_start(i)
            a, b = row - first, min(stop - first, self.meta.shard_rows(i))
            out[row - start:row - start + b - a] = self.shard_values(i)[a:b]
            row += b - a
        return torch.from_numpy(out).view(self.torch_dtype)

    def read_index(self, start: int, stop: int) -> np.ndarray:
        """(image_index, token_index) of rows [start, stop), int32 [stop − start, 2]."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"{self.directory}: rows [{start}, {stop}) out of range [0, {self.n_rows})")
        parts = []
        row = start
        while row < stop:
            i = self.shard_of(row)
            first = self.shard_start(i)
            a, b = row - first, min(stop - first, self.meta.shard_rows(i))
            parts.append(np.asarray(self.shard_index(i)[a:b]))
            row += b - a
        return np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.int32)

    def image_indices(self) -> np.ndarray:
        """Dataset index of each harvested image, int64 [n_images] (ascending)."""
        t = self.n_tokens_per_image
        out = np.empty(self.n_images, dtype=np.int64)
        for i in range(self.n_shards):
            start = self.shard_start(i)
            first = -(-start // t) * t            # first image-start row in this shard
            rows = np.arange(first, start + self.meta.shard_rows(i), t)
            out[rows // t] = self.shard_index(i)[rows - start, 0]
        return out
