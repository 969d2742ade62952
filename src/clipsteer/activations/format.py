"""The on-disk ActivationStore format (versions 1 and 2): file names, metadata schema, validation.

One store = one directory holding the activations of one site:

    metadata.json        StoreMetadata as JSON; `"complete": true` only once every shard is written;
                         `shard_checksums` holds each shard's [values, index] SHA-256 (recorded at write,
                         verified by `clipsteer check` and by the training loader), `nonfinite_images` the
                         images whose rows hold NaN/inf (harvested with `--nonfinite record`)
    progress.json        only while a harvest is running or was interrupted (see writer.py)
    shard_00000.bin      rows [0, shard_rows) as raw little-endian fp16 or bf16, shape [rows, d_model]
    shard_00000.idx      the same rows' (image_index, token_index) as little-endian int32, shape [rows, 2]
    shard_00001.bin ...  every shard holds exactly `shard_rows` rows except possibly the last

Rows are image-major: each harvested image contributes `n_tokens_per_image` consecutive rows, in
token order, so harvested image k owns rows [k·T, (k+1)·T). `image_index` is the dataset index (skipped
images leave gaps); `token_index` is the position in the model's full token layout (0 = CLS, 1.. =
patches, row-major), so row r has token_index = first_token + r mod T. Nothing is pickled; raw
shards are read with `numpy.memmap`.

Version 2 (written by a harvest of W > 1 ranks, see `parts.py`) is the same store cut into W parts:
rank r harvested the contiguous image range [first_image, stop_image) of `parts[r]` into its own folder

    metadata.json        as above, plus "parts": [{directory, first_image, stop_image, n_rows, n_shards}, ...];
                         `shard_checksums` lists every shard of every part, in global shard order
    part_00000/          shard_00000.bin/.idx ... (every shard full except the part's last), part.json
    part_00001/ ...      (part.json: the part's counts, skipped images and its shards' SHA-256)

The global rows are the parts' rows in part order, so a version-2 store holds exactly the rows of a
single-process (version-1) harvest, in the same order; only the shard boundaries differ, and
`StoreMetadata.shards` maps a global shard number to its files. Version-1 stores are written and read
as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from clipsteer.activations.configs import StoreDtype
from clipsteer.errors import InputFormatError, IntegrityError
from clipsteer.models.sites import TOKEN_SELECTIONS, TokenSelection, token_slice

FORMAT_VERSION = 1
PARTS_FORMAT_VERSION = 2        # a store harvested in parts (several ranks); the fingerprint keeps version 1
METADATA_FILE = "metadata.json"
PROGRESS_FILE = "progress.json"
PART_FILE = "part.json"         # a finished part of a multi-rank harvest (writer.py)
VALUE_DTYPE = np.dtype("<u2")   # raw 16-bit patterns of fp16 / bf16 values
BYTES_PER_VALUE = VALUE_DTYPE.itemsize
INDEX_DTYPE = np.dtype("<i4")   # (image_index, token_index)

STORE_DTYPES: tuple[str, ...] = get_args(StoreDtype)
TORCH_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16}


# Names as the user spelled them: informational only. The model's identity is its content fingerprint
# (`model_revision`) and the dataset's is `dataset_fingerprint`, so a store stays valid when moved.
UNFINGERPRINTED = ("dataset", "model_name")
# Field renames across versions of the same format: old metadata.json key → field.
RENAMED_FIELDS = {"batch_size": "images_per_batch"}


class StoreError(InputFormatError):
    """A store directory that is missing, incomplete, corrupt, or written in another format."""


class StoreIntegrityError(StoreError, IntegrityError):
    """A shard whose bytes fail their checksum, or rows holding NaN/inf."""


class StoreMismatchError(StoreError):
    """A harvest would append to a store written from a different model, site, dataset or config."""


def shard_file(i: int) -> str:
    return f"shard_{i:05d}.bin"


def index_file(i: int) -> str:
    return f"shard_{i:05d}.idx"


def part_directory(rank: int) -> str:
    return f"part_{rank:05d}"


def tokens_layout(tokens: TokenSelection, n_tokens_model: int) -> tuple[int, int]:
    """(first_token, n_tokens_per_image) stored for a token selection from a model with n_tokens_model tokens."""
    first, stop, _ = token_slice(tokens).indices(n_tokens_model)
    return first, stop - first


@dataclass(frozen=True)
class StoreSpec:
    """What a store holds. Its fingerprint decides whether a harvest may resume (append) into it."""

    model_name: str
    model_revision: str
    model_dtype: str            # the dtype the model computed in, e.g. "float32"
    site: str                   # canonical site name, e.g. "blocks.6.resid_post"
    tokens: TokenSelection              # which tokens of each image were stored
    dtype: StoreDtype           # storage dtype of the rows
    d_model: int
    n_tokens_per_image: int     # rows per harvested image (T)
    first_token: int            # token_index of each image's first row: 0 (all, cls) or 1 (patches)
    shard_rows: int             # rows per shard (the last shard may hold fewer)
    dataset: str                # the dataset as the user named it (informational, not fingerprinted)
    dataset_fingerprint: str
    n_images_requested: int     # images the harvest visits: min(len(dataset), max_images)
    images_per_batch: int       # forward batch; part of the fingerprint so a resume computes identical rows

    def __post_init__(self) -> None:
        assert self.tokens in TOKEN_SELECTIONS, f"tokens must be one of {TOKEN_SELECTIONS}, got {self.tokens!r}"
        assert self.dtype in STORE_DTYPES, f"dtype must be one of {STORE_DTYPES}, got {self.dtype!r}"
        assert self.d_model > 0 and self.n_tokens_per_image > 0 and self.shard_rows > 0 and self.images_per_batch > 0
        assert self.first_token in (0, 1) and self.n_images_requested >= 0
        assert (self.tokens == "patches") == (self.first_token == 1), "patch stores start at token 1"
        assert self.tokens != "cls" or self.n_tokens_per_image == 1, "cls stores hold one row per image"

    def fingerprint(self) -> str:
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in UNFINGERPRINTED}
        payload = json.dumps({"format_version": FORMAT_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def first_fingerprint(self) -> str:
        """The fingerprint as clipsteer ≤ 0.1 wrote it (model path included, `batch_size` key): accepted
        when reading so that stores written before names became relocatable stay readable."""
        fields = {{v: k for k, v in RENAMED_FIELDS.items()}.get(k, k): v
                  for k, v in dataclasses.asdict(self).items() if k != "dataset"}
        payload = json.dumps({"format_version": FORMAT_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def differences(self, other: StoreSpec) -> list[str]:
        """Fingerprinted fields that differ, as 'field: this vs other' lines."""
        mine, theirs = dataclasses.asdict(self), dataclasses.asdict(other)
        return [f"{k}: {mine[k]!r} vs {theirs[k]!r}" for k in mine if k not in UNFINGERPRINTED and mine[k] != theirs[k]]


@dataclass(frozen=True)
class SkippedImage:
    """An image the harvest could not read: dataset index, name (e.g. relative path), the error."""

    index: int
    name: str
    error: str


@dataclass(frozen=True)
class StorePart:
    """One rank's share of a version-2 store: dataset images [first_image, stop_image) in `directory`."""

    directory: str
    first_image: int
    stop_image: int
    n_rows: int = 0
    n_shards: int = 0


@dataclass(frozen=True)
class ShardLocation:
    """Where global shard i lives: its files (relative to the store) and its global rows [start, start + rows)."""

    values: str
    index: str
    start: int
    rows: int


@dataclass(frozen=True)
class StoreMetadata:
    spec: StoreSpec
    fingerprint: str
    complete: bool
    n_rows: int
    n_images: int               # harvested (readable) images
    n_shards: int
    skipped: tuple[SkippedImage, ...] = ()
    shard_checksums: tuple[tuple[str, str], ...] | None = None   # per shard (values, index) SHA-256; None: older store
    nonfinite_images: tuple[int, ...] = ()                        # images with NaN/inf rows (--nonfinite record)
    parts: tuple[StorePart, ...] = ()     # empty: a version-1 (single-part) store

    @property
    def format_version(self) -> int:
        return PARTS_FORMAT_VERSION if self.parts else FORMAT_VERSION

    @property
    def torch_dtype(self) -> torch.dtype:
        return TORCH_DTYPES[self.spec.dtype]

    @cached_property
    def shards(self) -> tuple[ShardLocation, ...]:
        """Every shard in global row order (a complete store's)."""
        s = self.spec.shard_rows
        if not self.parts:
            return tuple(ShardLocation(shard_file(i), index_file(i), i * s, min(s, self.n_rows - i * s))
                         for i in range(self.n_shards))
        out, start = [], 0
        for part in self.parts:
            for j in range(part.n_shards):
                out.append(ShardLocation(f"{part.directory}/{shard_file(j)}", f"{part.directory}/{index_file(j)}",
                                         start + j * s, min(s, part.n_rows - j * s)))
            start += part.n_rows
        return tuple(out)

    def shard_rows(self, i: int) -> int:
        """Rows in shard i."""
        assert 0 <= i < self.n_shards, f"shard {i} out of range 0..{self.n_shards - 1}"
        return self.shards[i].rows

    def shard_start(self, i: int) -> int:
        """Global row index of shard i's first row."""
        assert 0 <= i < self.n_shards, f"shard {i} out of range 0..{self.n_shards - 1}"
        return self.shards[i].start

    def to_json(self) -> dict[str, Any]:
        obj = {
            "format_version": self.format_version, "complete": self.complete, "fingerprint": self.fingerprint,
            **dataclasses.asdict(self.spec),
            "n_rows": self.n_rows, "n_images": self.n_images, "n_shards": self.n_shards,
            "n_skipped": len(self.skipped), "skipped": [dataclasses.asdict(s) for s in self.skipped],
            "shard_checksums": None if self.shard_checksums is None else [list(c) for c in self.shard_checksums],
            "nonfinite_images": list(self.nonfinite_images),
        }
        if self.parts:
            obj["parts"] = [dataclasses.asdict(p) for p in self.parts]
        return obj

    @classmethod
    def from_json(cls, obj: Any, source: Path) -> StoreMetadata:
        """Parse and check a metadata.json object; every error names `source` and the field."""
        if not isinstance(obj, dict):
            raise StoreError(f"{source}: expected a JSON object, got {type(obj).__name__}")
        version = obj.get("format_version")
        if version not in (FORMAT_VERSION, PARTS_FORMAT_VERSION):
            raise StoreError(f"{source}: format_version {version!r} is not supported; this clipsteer reads "
                             f"format_version {FORMAT_VERSION} and {PARTS_FORMAT_VERSION} (re-harvest with this "
                             "version)")
        obj = {RENAMED_FIELDS.get(k, k): v for k, v in obj.items()}
        spec_kwargs = {}
        for f in dataclasses.fields(StoreSpec):
            spec_kwargs[f.name] = _field(obj, f.name, int if f.type in ("int",) else str, source)
        for name, choices in (("tokens", TOKEN_SELECTIONS), ("dtype", STORE_DTYPES)):
            if spec_kwargs[name] not in choices:
                raise StoreError(f"{source}: field {name!r} is {spec_kwargs[name]!r}; expected one of {list(choices)}")
        try:
            spec = StoreSpec(**spec_kwargs)
        except AssertionError as err:
            raise StoreError(f"{source}: inconsistent store description: {err}") from err
        skipped_raw = _field(obj, "skipped", list, source)
        skipped = []
        for j, s in enumerate(skipped_raw):
            where = f"skipped[{j}]"
            if not isinstance(s, dict):
                raise StoreError(f"{source}: field {where!r} expected an object, got {s!r}")
            skipped.append(SkippedImage(_field(s, "index", int, source, where), _field(s, "name", str, source, where),
                                        _field(s, "error", str, source, where)))
        checksums = obj.get("shard_checksums")
        if checksums is not None and not (isinstance(checksums, list) and all(
                isinstance(c, list) and len(c) == 2 and all(isinstance(h, str) for h in c) for c in checksums)):
            raise StoreError(f"{source}: field 'shard_checksums' expected a list of [values, index] hex digests")
        nonfinite = obj.get("nonfinite_images", [])
        if not (isinstance(nonfinite, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in nonfinite)):
            raise StoreError(f"{source}: field 'nonfinite_images' expected a list of image indices")
        parts = []
        if version == PARTS_FORMAT_VERSION:
            for j, p in enumerate(_field(obj, "parts", list, source)):
                where = f"parts[{j}]"
                if not isinstance(p, dict):
                    raise StoreError(f"{source}: field {where!r} expected an object, got {p!r}")
                parts.append(StorePart(_field(p, "directory", str, source, where),
                                       *(_field(p, name, int, source, where)
                                         for name in ("first_image", "stop_image", "n_rows", "n_shards"))))
            if not parts or any(p.directory != part_directory(j) for j, p in enumerate(parts)):
                raise StoreError(f"{source}: field 'parts' must list part_00000, part_00001, ... in order")
        elif "parts" in obj:
            raise StoreError(f"{source}: a format_version {FORMAT_VERSION} store has no 'parts' field")
        meta = cls(spec=spec, fingerprint=_field(obj, "fingerprint", str, source),
                   complete=_field(obj, "complete", bool, source), n_rows=_field(obj, "n_rows", int, source),
                   n_images=_field(obj, "n_images", int, source), n_shards=_field(obj, "n_shards", int, source),
                   skipped=tuple(skipped),
                   shard_checksums=None if checksums is None else tuple((c[0], c[1]) for c in checksums),
                   nonfinite_images=tuple(nonfinite), parts=tuple(parts))
        if meta.fingerprint not in (spec.fingerprint(), spec.first_fingerprint()):
            raise StoreError(f"{source}: fingerprint {meta.fingerprint} does not match the fields it describes "
                             f"({spec.fingerprint()}); the file was edited or corrupted")
        if meta.complete:
            meta.check_counts(source)
        return meta

    def check_counts(self, source: Path) -> None:
        """Invariants of a complete store."""
        t, s = self.spec.n_tokens_per_image, self.spec.shard_rows
        problems = []
        if self.n_rows != self.n_images * t:
            problems.append(f"n_rows={self.n_rows} but n_images×n_tokens_per_image={self.n_images}×{t}")
        pieces = [(p.n_rows, p.n_shards) for p in self.parts] if self.parts else [(self.n_rows, self.n_shards)]
        if any(n_shards != math.ceil(n_rows / s) for n_rows, n_shards in pieces):
            problems.append(f"(n_rows, n_shards) {pieces} but each part needs ceil(n_rows / shard_rows={s}) shards")
        if self.parts:
            if sum(r for r, _ in pieces) != self.n_rows or sum(n for _, n in pieces) != self.n_shards:
                problems.append(f"the parts hold {sum(r for r, _ in pieces)} rows in {sum(n for _, n in pieces)} "
                                f"shards, the store says {self.n_rows} rows in {self.n_shards}")
            bounds = [(p.first_image, p.stop_image) for p in self.parts]
            if bounds[0][0] != 0 or bounds[-1][1] != self.spec.n_images_requested or any(
                    a[1] != b[0] for a, b in zip(bounds, bounds[1:], strict=False)):
                problems.append(f"parts cover images {bounds}, not [0, {self.spec.n_images_requested}) in order")
        if self.n_images + len(self.skipped) != self.spec.n_images_requested:
            problems.append(f"n_images={self.n_images} + skipped={len(self.skipped)} ≠ "
                            f"n_images_requested={self.spec.n_images_requested}")
        if self.shard_checksums is not None and len(self.shard_checksums) != self.n_shards:
            problems.append(f"{len(self.shard_checksums)} shard checksums for n_shards={self.n_shards}")
        if problems:
            raise StoreError(f"{source}: inconsistent counts: " + "; ".join(problems))


def _field(obj: dict, name: str, typ: type, source: Path, where: str = "") -> Any:
    label = f"{where}.{name}" if where else name
    if name not in obj:
        raise StoreError(f"{source}: missing field {label!r}")
    value = obj[name]
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise StoreError(f"{source}: field {label!r} expected {typ.__name__}, got {value!r}")
    return value


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 8 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_metadata(directory: Path) -> StoreMetadata:
    """Parse `directory/metadata.json` (complete or not)."""
    path = directory / METADATA_FILE
    if not path.is_file():
        hint = ""
        if directory.is_dir():
            children = sorted(p.name for p in directory.iterdir() if (p / METADATA_FILE).is_file())
            if children:
                hint = f"; it holds stores {children}: pass one of those directories"
        raise StoreError(f"{path} not found: {directory} is not an activation store{hint}")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StoreError(f"{path}: not valid JSON ({err})") from err
    return StoreMetadata.from_json(obj, path)
