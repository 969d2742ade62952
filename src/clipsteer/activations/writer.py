"""StoreWriter: append activation rows to a store directory shard by shard, resumably.

Protocol (what makes resume exact):
- The harvest feeds rows chunk by chunk, a chunk being the readable images among dataset indices
  [chunk_start, chunk_end) (chunks are aligned to multiples of the batch size, so a resumed harvest
  re-forms exactly the same batches). Each call says which global row its first row is.
- Whenever `shard_rows` rows are buffered, the shard's values and index files are written
  atomically, then `progress.json` is rewritten atomically with the number of complete shards and the
  resume point: the chunk to restart from (`resume_image`) and the global row of that chunk's first
  row (`resume_row`). Rows of that chunk already inside complete shards are dropped on re-arrival.
- `metadata.json` is written with `"complete": false` when the store is created and rewritten with
  `"complete": true` by `finish()`, after the last (possibly short) shard. Then progress.json goes.
- Each shard's SHA-256 (values, index) is computed from the bytes written and kept in progress.json,
  then metadata.json. Rows holding NaN/inf are refused (StoreIntegrityError naming the images) or,
  with `nonfinite="record"`, stored and their images listed in `nonfinite_images`.
Memory is bounded by one shard buffer plus the chunk being added.

A *part* writer (`StoreWriter.open_part`, used by a multi-rank harvest, see parts.py) writes the same way
into one rank's `part_NNNNN/` folder, for the images [first_image, stop_image) only; its rows are numbered
from 0 within the part, and `finish_part()` records the part (counts, skipped images, each shard's
SHA-256, images with NaN/inf rows) in `part.json` instead of `metadata.json`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from clipsteer.activations.configs import NonFinite
from clipsteer.activations.format import (
    INDEX_DTYPE,
    METADATA_FILE,
    PART_FILE,
    PROGRESS_FILE,
    TORCH_DTYPES,
    VALUE_DTYPE,
    SkippedImage,
    StoreError,
    StoreIntegrityError,
    StoreMetadata,
    StoreMismatchError,
    StoreSpec,
    file_sha256,
    index_file,
    read_metadata,
    shard_file,
)
from clipsteer.atomic import TMP_SUFFIX, atomic_write_array, atomic_write_json, fsync_dir, make_folder


@dataclass(frozen=True)
class Progress:
    """Where an interrupted harvest restarts: complete shards, the chunk to redo and its first global row."""

    n_shards: int = 0
    resume_image: int = 0
    resume_row: int = 0
    skipped: tuple[SkippedImage, ...] = ()   # skipped images with index < resume_image
    checksums: tuple[tuple[str, str], ...] = ()   # (values, index) SHA-256 of each complete shard
    nonfinite: tuple[int, ...] = ()          # images with NaN/inf rows, index < resume_image

    def to_json(self, fingerprint: str) -> dict:
        return {"fingerprint": fingerprint, "n_shards": self.n_shards, "resume_image": self.resume_image,
                "resume_row": self.resume_row, "skipped": [dataclasses.asdict(s) for s in self.skipped],
                "checksums": [list(c) for c in self.checksums], "nonfinite_images": list(self.nonfinite)}

    @classmethod
    def read(cls, path: Path, fingerprint: str) -> Progress:
        try:
            obj = json.loads(path.read_text())
            assert obj["fingerprint"] == fingerprint, "fingerprint differs from metadata.json"
            skipped = tuple(SkippedImage(int(s["index"]), str(s["name"]), str(s["error"])) for s in obj["skipped"])
            checksums = tuple((str(a), str(b)) for a, b in obj.get("checksums", []))
            nonfinite = tuple(int(i) for i in obj.get("nonfinite_images", []))
            progress = cls(int(obj["n_shards"]), int(obj["resume_image"]), int(obj["resume_row"]), skipped,
                           checksums, nonfinite)
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AssertionError) as err:
            raise StoreError(f"{path}: unreadable harvest progress ({type(err).__name__}: {err}); "
                             f"delete the store directory {path.parent} and harvest again") from err
        assert progress.resume_row >= 0 and progress.n_shards >= 0
        return progress


@dataclass(frozen=True)
class PartRecord:
    """`part.json`: a finished part of a multi-rank store (one rank's images [first_image, stop_image))."""

    fingerprint: str
    first_image: int
    stop_image: int
    n_rows: int
    n_images: int
    n_shards: int
    skipped: tuple[SkippedImage, ...]
    checksums: tuple[tuple[str, str], ...]   # (values, index) SHA-256 of each of the part's shards
    nonfinite_images: tuple[int, ...] = ()   # images of the part with NaN/inf rows (--nonfinite record)

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "skipped": [dataclasses.asdict(s) for s in self.skipped],
                "checksums": [list(c) for c in self.checksums], "nonfinite_images": list(self.nonfinite_images)}

    @classmethod
    def read(cls, path: Path) -> PartRecord:
        try:
            obj = json.loads(path.read_text())
            skipped = tuple(SkippedImage(int(s["index"]), str(s["name"]), str(s["error"])) for s in obj["skipped"])
            checksums = tuple((str(a), str(b)) for a, b in obj["checksums"])
            record = cls(str(obj["fingerprint"]), *(int(obj[k]) for k in ("first_image", "stop_image", "n_rows",
                                                                           "n_images", "n_shards")), skipped,
                         checksums, tuple(int(i) for i in obj.get("nonfinite_images", [])))
            assert len(record.checksums) == record.n_shards, f"{len(checksums)} checksums for {record.n_shards} shards"
            return record
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AssertionError) as err:
            raise StoreError(f"{path}: unreadable part record ({type(err).__name__}: {err}); delete {path.parent} "
                             "and rerun the harvest to redo that part") from err


class StoreWriter:
    """Writes one store. Use `StoreWriter.open(directory, spec)`; then `add(...)` chunks; then `finish(...)`."""

    def __init__(self, directory: Path, spec: StoreSpec, progress: Progress, complete: bool,
                 nonfinite: NonFinite = "refuse", images: tuple[int, int] | None = None):
        self.directory = directory
        self.nonfinite = nonfinite
        self._nonfinite_images: set[int] = set(progress.nonfinite)
        self.spec = spec
        self.fingerprint = spec.fingerprint()
        self.progress = progress
        self.complete = complete
        self.is_part = images is not None
        self.first_image, self.stop_image = images if images is not None else (0, spec.n_images_requested)
        self._values = np.empty((spec.shard_rows, spec.d_model), dtype=VALUE_DTYPE)
        self._index = np.empty((spec.shard_rows, 2), dtype=INDEX_DTYPE)
        self._fill = 0   # rows buffered in the current (incomplete) shard

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, directory: Path, spec: StoreSpec, nonfinite: NonFinite = "refuse") -> StoreWriter:
        """Create a new store, or resume an interrupted one written with the same fingerprint.

        Raises StoreMismatchError (listing the differing fields) when `directory` holds a store of
        anything else, and StoreError when it holds unrelated files. A complete store with the same
        fingerprint opens with `complete=True` (nothing left to do).
        """
        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        if meta_path.is_file():
            meta = read_metadata(directory)
            if meta.spec.fingerprint() != spec.fingerprint():
                diffs = "\n  ".join(meta.spec.differences(spec))
                raise StoreMismatchError(
                    f"{directory} already holds a {'complete' if meta.complete else 'partial'} store for a "
                    f"different harvest (fingerprint {meta.spec.fingerprint()} vs {spec.fingerprint()}); refusing to "
                    f"append. Differences (store vs requested):\n  {diffs}\nChoose another output directory, "
                    f"or delete {directory} to start over.")
            if meta.complete:
                return cls(directory, spec, Progress(meta.n_shards, spec.n_images_requested, meta.n_rows,
                                                     meta.skipped), complete=True, nonfinite=nonfinite)
            if meta.parts:
                raise StoreError(f"{directory} holds a harvest started by {len(meta.parts)} ranks under torchrun; "
                                 f"resume it with `torchrun --nproc-per-node {len(meta.parts)} -m clipsteer harvest "
                                 f"...` (same arguments), or delete {directory} to start over")
            progress_path = directory / PROGRESS_FILE
            progress = Progress.read(progress_path, meta.fingerprint) if progress_path.is_file() else Progress()
            writer = cls(directory, spec, progress, complete=False, nonfinite=nonfinite)
            writer._remove_stray_files()
            return writer
        if directory.exists() and any(directory.iterdir()):
            raise StoreError(f"{directory} exists and is not empty but has no {METADATA_FILE}; refusing to write "
                             f"a store into it (choose an empty or new directory)")
        make_folder(directory)
        writer = cls(directory, spec, Progress(), complete=False, nonfinite=nonfinite)
        writer._write_metadata(complete=False, n_rows=0, n_images=0, n_shards=0, skipped=())
        return writer

    @classmethod
    def open_part(cls, directory: Path, spec: StoreSpec, first_image: int, stop_image: int,
                  nonfinite: NonFinite = "refuse") -> StoreWriter:
        """Create or resume the part folder of one rank (images [first_image, stop_image)); the store's
        metadata.json, one level up, has already been checked against `spec` by the caller."""
        directory = Path(directory)
        images = (first_image, stop_image)
        record_path = directory / PART_FILE
        if record_path.is_file():
            record = PartRecord.read(record_path)
            if (record.fingerprint, record.first_image, record.stop_image) != (spec.fingerprint(), *images):
                raise StoreMismatchError(f"{record_path} records images [{record.first_image}, {record.stop_image}) "
                                         f"of harvest {record.fingerprint}, not [{first_image}, {stop_image}) of "
                                         f"{spec.fingerprint()}; delete {directory.parent} to start over")
            return cls(directory, spec, Progress(record.n_shards, stop_image, record.n_rows, record.skipped,
                                                 record.checksums, record.nonfinite_images),
                       complete=True, nonfinite=nonfinite, images=images)
        progress_path = directory / PROGRESS_FILE
        progress = (Progress.read(progress_path, spec.fingerprint()) if progress_path.is_file()
                    else Progress(resume_image=first_image))
        make_folder(directory)
        writer = cls(directory, spec, progress, complete=False, nonfinite=nonfinite, images=images)
        writer._remove_stray_files()
        return writer

    def _remove_stray_files(self) -> None:
        """Shards beyond the recorded progress (written just before a kill) and temp files are discarded."""
        keep = {PROGRESS_FILE} if self.is_part else {METADATA_FILE, PROGRESS_FILE}
        keep |= {shard_file(i) for i in range(self.progress.n_shards)}
        keep |= {index_file(i) for i in range(self.progress.n_shards)}
        for path in self.directory.iterdir():
            if path.name in keep:
                continue
            if path.name.startswith("shard_") or path.name.endswith(TMP_SUFFIX):
                path.unlink()
            else:
                raise StoreError(f"{path}: unexpected file in a partial store; remove it or start over")
        for i in range(self.progress.n_shards):  # complete shards must be whole
            self._check_shard_size(i, self.spec.shard_rows)
        if len(self.progress.checksums) < self.progress.n_shards:   # progress written by an older clipsteer
            sums = [(file_sha256(self.directory / shard_file(i)), file_sha256(self.directory / index_file(i)))
                    for i in range(self.progress.n_shards)]
            self.progress = dataclasses.replace(self.progress, checksums=tuple(sums))

    def _check_shard_size(self, i: int, rows: int) -> None:
        for name, row_bytes in ((shard_file(i), self.spec.d_model * VALUE_DTYPE.itemsize),
                                (index_file(i), 2 * INDEX_DTYPE.itemsize)):
            path = self.directory / name
            expected = rows * row_bytes
            actual = path.stat().st_size if path.is_file() else None
            if actual != expected:
                raise StoreError(f"{path}: expected {expected} bytes ({rows} rows), found "
                                 f"{'no file' if actual is None else f'{actual} bytes'}; the store is corrupt — "
                                 f"delete {self.directory} and harvest again")

    # ------------------------------------------------------------------ writing
    @property
    def rows_written(self) -> int:
        """Rows in complete shards."""
        return self.progress.n_shards * self.spec.shard_rows

    @property
    def position(self) -> int:
        """Global row index the next new row will get."""
        return self.rows_written + self._fill

    def add(self, first_row: int, values: Tensor, index: np.ndarray, chunk_start: int, chunk_end: int,
            skipped: Sequence[SkippedImage]) -> None:
        """Append the rows of one chunk.

        values: [N, d_model] (any float dtype; stored as the spec's dtype); index: int [N, 2]
        (image_index, token_index); first_row: global row of values[0]; chunk_start/chunk_end: the
        dataset index range the chunk covers; skipped: every image skipped so far (this chunk included).
        Rows before `position` were already stored (a resumed chunk) and are dropped.
        """
        assert not self.complete, f"{self.directory}: store is already complete"
        n, d = values.shape
        assert d == self.spec.d_model, f"{self.directory}: rows have d={d}, store expects d_model={self.spec.d_model}"
        assert index.shape == (n, 2), f"index must be [N, 2], got {index.shape} for N={n}"
        assert 0 <= chunk_start <= chunk_end, (chunk_start, chunk_end)
        if first_row > self.position:
            raise AssertionError(f"{self.directory}: gap in rows: got row {first_row}, expected ≤ {self.position}")
        drop = min(n, self.position - first_row)
        stored = values.detach().to(TORCH_DTYPES[self.spec.dtype]).cpu()
        self._check_finite(stored, values, index)
        raw = stored.view(torch.uint16).numpy()
        consumed = drop
        while consumed < n:
            take = min(n - consumed, self.spec.shard_rows - self._fill)
            self._values[self._fill:self._fill + take] = raw[consumed:consumed + take]
            self._index[self._fill:self._fill + take] = index[consumed:consumed + take]
            self._fill += take
            consumed += take
            if self._fill == self.spec.shard_rows:
                resume = (chunk_end, first_row + n) if consumed == n else (chunk_start, first_row)
                self._write_shard(resume, skipped)

    def _check_finite(self, stored: Tensor, values: Tensor, index: np.ndarray) -> None:
        """Refuse or record rows holding NaN/inf after conversion to the storage dtype.

        stored: [N, d] in the storage dtype; values: the same rows as computed; index: [N, 2]."""
        bad = ~torch.isfinite(stored).all(dim=1)
        if not bool(bad.any()):
            return
        images = sorted({int(i) for i in index[bad.numpy(), 0]})
        if self.nonfinite == "record":
            self._nonfinite_images.update(images)
            return
        overflow = bool(torch.isfinite(values.detach().cpu()[bad]).all())
        cause = (f"values beyond the range of {self.spec.dtype} (use --dtype bfloat16)" if overflow
                 else "NaN/inf computed by the model")
        raise StoreIntegrityError(
            f"{self.directory}: non-finite activations ({cause}) in {int(bad.sum())} rows of images "
            f"{images[:5]}{' ...' if len(images) > 5 else ''}; refusing to store them (harvest with "
            f"--nonfinite record to store and list them instead)")

    def _write_shard(self, resume: tuple[int, int], skipped: Sequence[SkippedImage]) -> None:
        i = self.progress.n_shards
        values, index = self._values[:self._fill], self._index[:self._fill]
        atomic_write_array(self.directory / shard_file(i), values)
        atomic_write_array(self.directory / index_file(i), index)
        checksum = (hashlib.sha256(memoryview(np.ascontiguousarray(values)).cast("B")).hexdigest(),
                    hashlib.sha256(memoryview(np.ascontiguousarray(index)).cast("B")).hexdigest())
        resume_image, resume_row = resume
        self.progress = Progress(i + 1, resume_image, resume_row,
                                 tuple(s for s in skipped if s.index < resume_image),
                                 (*self.progress.checksums, checksum),
                                 tuple(sorted(j for j in self._nonfinite_images if j < resume_image)))
        if self._fill == self.spec.shard_rows:  # short final shards are recorded by finish() only
            atomic_write_json(self.directory / PROGRESS_FILE, self.progress.to_json(self.fingerprint))
        self._fill = 0

    def finish(self, n_images: int, skipped: Sequence[SkippedImage]) -> StoreMetadata:
        """Write the last (short) shard and mark the store complete. n_images: harvested images."""
        assert not self.complete and not self.is_part, f"{self.directory}: store is complete, or a part"
        n_rows = self.position
        if n_rows == 0:
            raise StoreError(f"{self.directory}: no rows to store (every image was skipped?)")
        if self._fill:
            self._write_shard((self.spec.n_images_requested, n_rows), skipped)
        skipped = tuple(sorted(skipped, key=lambda s: s.index))
        meta = self._write_metadata(True, n_rows, n_images, self.progress.n_shards, skipped,
                                    self.progress.checksums, tuple(sorted(self._nonfinite_images)))
        (self.directory / PROGRESS_FILE).unlink(missing_ok=True)
        fsync_dir(self.directory)
        self.complete = True
        return meta

    def finish_part(self, n_images: int, skipped: Sequence[SkippedImage]) -> PartRecord:
        """Write the part's last (short) shard and its part.json (a part may hold no rows at all)."""
        assert self.is_part and not self.complete, f"{self.directory}: not an unfinished part"
        n_rows = self.position
        if self._fill:
            self._write_shard((self.stop_image, n_rows), skipped)
        record = PartRecord(self.fingerprint, self.first_image, self.stop_image, n_rows, n_images,
                            self.progress.n_shards, tuple(sorted(skipped, key=lambda s: s.index)),
                            self.progress.checksums, tuple(sorted(self._nonfinite_images)))
        assert record.n_rows == n_images * self.spec.n_tokens_per_image
        assert n_images + len(record.skipped) == self.stop_image - self.first_image
        atomic_write_json(self.directory / PART_FILE, record.to_json())
        (self.directory / PROGRESS_FILE).unlink(missing_ok=True)
        fsync_dir(self.directory)
        self.complete = True
        return record

    def _write_metadata(self, complete: bool, n_rows: int, n_images: int, n_shards: int,
                        skipped: tuple[SkippedImage, ...], checksums: tuple[tuple[str, str], ...] = (),
                        nonfinite: tuple[int, ...] = ()) -> StoreMetadata:
        meta = StoreMetadata(self.spec, self.fingerprint, complete, n_rows, n_images, n_shards, skipped,
                             checksums, nonfinite)
        if complete:
            meta.check_counts(self.directory / METADATA_FILE)
        atomic_write_json(self.directory / METADATA_FILE, meta.to_json())
        return meta
