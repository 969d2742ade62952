"""A store harvested by several ranks (format version 2): the plan, the shared metadata, the final merge.

Each of W ranks harvests one contiguous range of whole forward batches into `part_<rank>/` (see
format.py and `StoreWriter.open_part`), so every image goes through exactly the forward batch it would
have had in a single process, and the parts in rank order are the single-process rows in order.

    rank 0: begin_parted_store (metadata.json, complete=false, with the plan)   ─┐
    all:    barrier, check_parted_store, harvest own part, part.json             │ harvest.py
    rank 0: barrier, finish_parted_store (metadata.json, complete=true)         ─┘

Each part resumes on its own (its progress.json); a store begun with W ranks resumes only with W ranks.
Integrity is the single-process store's: each part writer hashes every shard it writes (progress.json,
then part.json), and the final metadata.json lists those checksums in global shard order, so
`ActivationStore.verify_shard`, the training loader and `clipsteer check` verify a parted store as they
do any other. Rank 0 holds OUT's folder lock for the whole job; the other ranks write only inside their
own `part_<rank>/` folders (docs/scaling-out.md).
"""

from __future__ import annotations

import math
from pathlib import Path

from clipsteer.activations.format import (
    METADATA_FILE,
    PART_FILE,
    StoreError,
    StoreMetadata,
    StoreMismatchError,
    StorePart,
    StoreSpec,
    part_directory,
    read_metadata,
)
from clipsteer.activations.writer import PartRecord
from clipsteer.atomic import atomic_write_json, make_folder


def plan_parts(n_images: int, images_per_batch: int, world: int) -> list[tuple[int, int]]:
    """Image ranges [first, stop) of ranks 0..world-1: consecutive runs of whole batches, as even as can be."""
    assert n_images >= 0 and images_per_batch > 0 and world > 0
    n_batches = math.ceil(n_images / images_per_batch)
    bounds = [min(n_images, (r * n_batches // world) * images_per_batch) for r in range(world + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _planned(plan: list[tuple[int, int]]) -> tuple[StorePart, ...]:
    return tuple(StorePart(part_directory(r), first, stop) for r, (first, stop) in enumerate(plan))


def check_parted_store(directory: Path, spec: StoreSpec, plan: list[tuple[int, int]]) -> bool:
    """Check that `directory` holds this harvest begun with this plan; True when it is already complete."""
    meta = read_metadata(directory)
    if meta.fingerprint != spec.fingerprint():
        diffs = "\n  ".join(meta.spec.differences(spec))
        raise StoreMismatchError(f"{directory} already holds a store for a different harvest (fingerprint "
                                 f"{meta.fingerprint} vs {spec.fingerprint()}); refusing to append. Differences "
                                 f"(store vs requested):\n  {diffs}\nChoose another output directory, or delete "
                                 f"{directory} to start over.")
    if meta.complete:
        return True
    planned = [(p.first_image, p.stop_image) for p in meta.parts]
    if not meta.parts:
        raise StoreError(f"{directory} holds an interrupted single-process harvest; resume it without torchrun (same "
                         f"arguments), or delete {directory} to start over")
    if planned != plan:
        raise StoreError(f"{directory} holds a harvest started by {len(planned)} ranks (image ranges {planned}); "
                         f"resume it with `torchrun --nproc-per-node {len(planned)}` (same arguments), not {len(plan)} "
                         f"ranks, or delete {directory} to start over")
    return False


def begin_parted_store(directory: Path, spec: StoreSpec, plan: list[tuple[int, int]]) -> bool:
    """Rank 0: create the store's metadata.json (incomplete, with the plan) or check the existing one.
    True when the store is already complete."""
    directory = Path(directory)
    if (directory / METADATA_FILE).is_file():
        return check_parted_store(directory, spec, plan)
    if directory.exists() and any(directory.iterdir()):
        raise StoreError(f"{directory} exists and is not empty but has no {METADATA_FILE}; refusing to write a store "
                         "into it (choose an empty or new directory)")
    make_folder(directory)
    meta = StoreMetadata(spec, spec.fingerprint(), complete=False, n_rows=0, n_images=0, n_shards=0,
                         parts=_planned(plan))
    atomic_write_json(directory / METADATA_FILE, meta.to_json())
    return False


def finish_parted_store(directory: Path, spec: StoreSpec, plan: list[tuple[int, int]]) -> StoreMetadata:
    """Rank 0, after every rank finished its part: merge the parts' records into a complete metadata.json."""
    records = []
    for rank, part in enumerate(_planned(plan)):
        path = directory / part.directory / PART_FILE
        if not path.is_file():
            raise StoreError(f"{path} is missing: rank {rank}'s part is unfinished; "
                             "rerun the same harvest to complete it")
        record = PartRecord.read(path)
        if (record.fingerprint, record.first_image, record.stop_image) != (spec.fingerprint(), part.first_image,
                                                                          part.stop_image):
            raise StoreMismatchError(f"{path} belongs to another harvest or plan; delete {directory} and start over")
        records.append(record)
    parts = tuple(StorePart(p.directory, p.first_image, p.stop_image, r.n_rows, r.n_shards)
                  for p, r in zip(_planned(plan), records, strict=True))
    n_rows = sum(r.n_rows for r in records)
    if n_rows == 0:
        raise StoreError(f"{directory}: no rows to store (every image was skipped?)")
    meta = StoreMetadata(spec, spec.fingerprint(), complete=True, n_rows=n_rows,
                         n_images=sum(r.n_images for r in records), n_shards=sum(r.n_shards for r in records),
                         skipped=tuple(s for r in records for s in r.skipped),
                         shard_checksums=tuple(c for r in records for c in r.checksums),
                         nonfinite_images=tuple(i for r in records for i in r.nonfinite_images), parts=parts)
    meta.check_counts(directory / METADATA_FILE)
    atomic_write_json(directory / METADATA_FILE, meta.to_json())
    return meta
