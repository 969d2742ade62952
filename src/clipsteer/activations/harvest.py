"""`clipsteer harvest`: images → Backbone.capture (one forward, early exit) → one ActivationStore per site.

    clipsteer harvest --sites blocks.2.resid_post blocks.3.resid_post --out acts/ \
        --dataset world:train --tokens all --shard-rows 65536

writes `acts/blocks.2.resid_post/` and `acts/blocks.3.resid_post/`. Rerunning the same command after an
interruption resumes every store at its last complete shard and yields exactly the rows an
uninterrupted run would have; a different model, site, dataset or config is refused (see writer.py).
Memory stays bounded: a few decoded batches in flight plus one shard buffer per site.

Under torchrun (`torchrun --nproc-per-node 4 -m clipsteer harvest ...`, docs/scaling-out.md) each rank
harvests its own contiguous run of batches into `OUT/<site>/part_<rank>/` and rank 0 writes the store's
metadata once every rank has finished (see parts.py); the store holds the same rows as a single-process
harvest, in the same order, and each part resumes on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from clipsteer.activations.configs import HarvestConfig, NonFinite, StoreDtype
from clipsteer.activations.format import (
    BYTES_PER_VALUE,
    SkippedImage,
    StoreError,
    StoreSpec,
    part_directory,
    tokens_layout,
)
from clipsteer.activations.parts import (
    begin_parted_store,
    check_parted_store,
    finish_parted_store,
    plan_parts,
)
from clipsteer.activations.prefetch import iter_chunks
from clipsteer.activations.writer import StoreWriter
from clipsteer.data import ImageDataset, open_dataset
from clipsteer.errors import ConfigError, check_positive
from clipsteer.models.backbone import Backbone
from clipsteer.models.names import resolve_model
from clipsteer.models.sites import TokenSelection
from clipsteer.sae.distributed import LOCAL, Sync, job_folder_lock, process_group


def harvest(config: HarvestConfig) -> dict[str, Path]:
    """The CLI command: load the model and dataset, then `harvest_dataset`."""
    if not config.sites:
        raise ValueError("harvest: --sites is required, e.g. --sites blocks.2.resid_post")
    check_positive(config, ("images_per_batch", "shard_rows", "max_images"))
    if config.workers < 0:
        raise ConfigError(f"--workers must be ≥ 0, got {config.workers}")
    with process_group(config.device, config.dist.backend, config.dist.timeout_s) as rank:
        backbone = Backbone.from_pretrained(resolve_model(config.model), device=config.device)
        dataset = open_dataset(config.dataset, model_dir=backbone.model_dir if config.match_dataset_to_model else None)
        return harvest_dataset(backbone, dataset, config.sites, config.out, tokens=config.tokens,
                               images_per_batch=config.images_per_batch, shard_rows=config.shard_rows,
                               dtype=config.dtype, max_images=config.max_images, workers=config.workers,
                               dataset_spec=config.dataset, progress=rank.is_main, nonfinite=config.nonfinite,
                               sync=Sync(rank))


def store_spec(backbone: Backbone, site: str, dataset: ImageDataset, *, tokens: TokenSelection, images_per_batch: int,
               shard_rows: int, dtype: StoreDtype, n_images: int, dataset_spec: str) -> StoreSpec:
    first_token, n_tokens = tokens_layout(tokens, backbone.n_tokens)
    return StoreSpec(
        model_name=str(backbone.name), model_revision=str(backbone.revision),
        model_dtype=str(backbone.dtype).removeprefix("torch."), site=site, tokens=tokens, dtype=dtype,
        d_model=backbone.d_model, n_tokens_per_image=n_tokens, first_token=first_token, shard_rows=shard_rows,
        dataset=dataset_spec, dataset_fingerprint=dataset.fingerprint(), n_images_requested=n_images,
        images_per_batch=images_per_batch)


def harvest_dataset(backbone: Backbone, dataset: ImageDataset, sites: Sequence[str], out: str | Path, *,
                    tokens: TokenSelection = "all", images_per_batch: int = 64, shard_rows: int = 65536,
                    dtype: StoreDtype = "float16", max_images: int | None = None, workers: int = 2,
                    dataset_spec: str | None = None, progress: bool = True,
                    nonfinite: NonFinite = "refuse", sync: Sync = LOCAL) -> dict[str, Path]:
    """Harvest `dataset` at `sites` into OUT/<site>/ stores (creating or resuming them). Returns {site: dir}.

    OUT is locked while the harvest writes (a second harvest into it is refused). `nonfinite`: what a
    NaN/inf activation does: "refuse" stops the harvest naming the images; "record" stores the rows and
    lists the images in metadata.json (training on such a store stops, naming the store and shard).
    sync: the ranks sharing the work (torchrun); each harvests a part of the dataset (see parts.py), and
    rank 0 holds OUT's lock for the whole job (`job_folder_lock`).
    """
    if images_per_batch <= 0 or shard_rows <= 0:
        raise ValueError(f"images_per_batch and shard_rows must be positive, got {images_per_batch} and {shard_rows}")
    if max_images is not None and max_images <= 0:
        raise ValueError(f"max_images must be positive when given, got {max_images}")
    names = [backbone.site(s).name for s in sites]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"sites must be a non-empty list of distinct sites, got {list(sites)}")
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    out = Path(out).expanduser()
    with job_folder_lock(out, "harvest", sync):
        return _harvest_locked(backbone, dataset, names, out, n, tokens=tokens, images_per_batch=images_per_batch,
                               shard_rows=shard_rows, dtype=dtype, workers=workers, nonfinite=nonfinite,
                               dataset_spec=dataset_spec, progress=progress, sync=sync)


def _harvest_locked(backbone: Backbone, dataset: ImageDataset, names: list[str], out: Path, n: int, *,
                    tokens: TokenSelection, images_per_batch: int, shard_rows: int, dtype: StoreDtype, workers: int,
                    nonfinite: NonFinite, dataset_spec: str | None, progress: bool, sync: Sync) -> dict[str, Path]:
    spec_of = {site: store_spec(backbone, site, dataset, tokens=tokens, images_per_batch=images_per_batch, shard_rows=shard_rows,
                                dtype=dtype, n_images=n, dataset_spec=dataset_spec or repr(dataset))
               for site in names}
    if sync.world > 1:
        return _harvest_parts(backbone, dataset, spec_of, out, tokens, workers, progress, nonfinite, sync)
    writers = {site: StoreWriter.open(out / site, spec, nonfinite) for site, spec in spec_of.items()}
    todo = {site: w for site, w in writers.items() if not w.complete}
    if not todo:
        print(f"harvest: all {len(writers)} stores under {out} are already complete; nothing to do")
        return {site: w.directory for site, w in writers.items()}
    n_images, skipped = _harvest_range(backbone, dataset, todo, tokens, workers, progress)
    if n_images == 0:
        raise StoreError(f"harvest: none of the {n} images could be read (first error: "
                         f"{skipped[0].error if skipped else 'none'}); nothing was stored")
    spec = next(iter(spec_of.values()))
    for writer in todo.values():
        meta = writer.finish(n_images, skipped)
        size_mb = meta.n_rows * spec.d_model * BYTES_PER_VALUE / 2**20
        print(f"harvest: {writer.directory}  {meta.n_images} images × {spec.n_tokens_per_image} tokens = "
              f"{meta.n_rows} rows, {meta.n_shards} shards, {size_mb:.1f} MiB {dtype}, {len(skipped)} skipped")
    _report_skipped(skipped)
    return {site: w.directory for site, w in writers.items()}


def _harvest_parts(backbone: Backbone, dataset: ImageDataset, spec_of: dict[str, StoreSpec], out: Path,
                   tokens: TokenSelection, workers: int, progress: bool, nonfinite: NonFinite,
                   sync: Sync) -> dict[str, Path]:
    """This rank's part of a multi-rank harvest; rank 0 begins and finishes the stores (see parts.py).

    Each step that can fail on one rank (a store of another harvest, a bad image, NaN activations) ends
    with `sync.agree`, so every rank stops with the error instead of waiting for the failed one."""
    rank = sync.rank
    spec = next(iter(spec_of.values()))
    plan = plan_parts(spec.n_images_requested, spec.images_per_batch, rank.world)
    error: Exception | None = None
    if rank.is_main:
        try:
            for site, site_spec in spec_of.items():
                begin_parted_store(out / site, site_spec, plan)
        except Exception as err:   # noqa: BLE001  (reported to every rank by agree)
            error = err
    sync.agree(error)
    pending: list[str] = []
    try:
        pending = [site for site, site_spec in spec_of.items() if not check_parted_store(out / site, site_spec, plan)]
        writers = {site: StoreWriter.open_part(out / site / part_directory(rank.index), spec_of[site],
                                               *plan[rank.index], nonfinite) for site in pending}
        todo = {site: w for site, w in writers.items() if not w.complete}
        if todo:
            n_images, skipped = _harvest_range(backbone, dataset, todo, tokens, workers, progress)
            for writer in todo.values():
                writer.finish_part(n_images, skipped)
    except Exception as err:   # noqa: BLE001
        error = err
    sync.agree(error)   # every part is finished
    if rank.is_main:
        try:
            if not pending:
                print(f"harvest: all {len(spec_of)} stores under {out} are already complete; nothing to do")
            for site in pending:
                meta = finish_parted_store(out / site, spec_of[site], plan)
                print(f"harvest: {out / site}  {meta.n_images} images = {meta.n_rows} rows in {len(plan)} parts, "
                      f"{meta.n_shards} shards, {len(meta.skipped)} skipped")
                _report_skipped(list(meta.skipped))
        except Exception as err:   # noqa: BLE001
            error = err
    sync.agree(error)   # the stores are complete when any rank returns
    return {site: out / site for site in spec_of}


def _harvest_range(backbone: Backbone, dataset: ImageDataset, todo: dict[str, StoreWriter], tokens: TokenSelection,
                   workers: int, progress: bool) -> tuple[int, list[SkippedImage]]:
    """Feed the writers' images [first_image, stop_image) (all writers share the range), resuming from the
    one furthest behind. Returns (readable images, skipped images) of the whole range."""
    any_writer = next(iter(todo.values()))
    spec, first, stop = any_writer.spec, any_writer.first_image, any_writer.stop_image
    images_per_batch = spec.images_per_batch
    t, d = spec.n_tokens_per_image, spec.d_model
    lead = min(todo.values(), key=lambda w: w.progress.resume_image)  # the store furthest behind
    image, row = lead.progress.resume_image, lead.progress.resume_row
    skipped = list(lead.progress.skipped)
    if (not (image == stop or (image - first) % images_per_batch == 0) or row % t
            or row // t + len(skipped) != image - first):
        raise StoreError(f"{lead.directory}/progress.json is inconsistent (resume_image={image}, resume_row={row}, "
                         f"{len(skipped)} skipped, {t} rows per image, batch size {images_per_batch}); delete "
                         f"{lead.directory} and harvest again")
    n_images = row // t
    token_ids = np.arange(spec.first_token, spec.first_token + t, dtype=np.int32)
    if image > first:
        print(f"harvest: resuming at image {image}/{stop} (row {row}) in "
              f"{', '.join(str(w.directory) for w in todo.values())}")

    with tqdm(total=stop - first, initial=image - first, unit="img", desc="harvest", disable=not progress,
              dynamic_ncols=True) as bar:
        for chunk in iter_chunks(dataset, image, stop, images_per_batch, backbone.preprocess, workers):
            skipped.extend(chunk.skipped)
            b = len(chunk.indices)
            if b:
                acts = backbone.capture(chunk.pixels, list(todo), tokens=tokens)
                index = np.stack([np.repeat(chunk.indices.astype(np.int32), t), np.tile(token_ids, b)], axis=1)
                for site, writer in todo.items():
                    x = acts[site]
                    assert x.shape == (b, t, d), f"{site}: captured {tuple(x.shape)}, expected {(b, t, d)}"
                    writer.add(row, x.reshape(b * t, d), index, chunk.start, chunk.end, skipped)
            row += b * t
            n_images += b
            bar.update(chunk.end - chunk.start)
            if chunk.skipped:
                bar.set_postfix(skipped=len(skipped))
    return n_images, skipped


def _report_skipped(skipped: list[SkippedImage]) -> None:
    for s in skipped[:5]:
        print(f"harvest: skipped image {s.index} ({s.name}): {s.error}")
    if len(skipped) > 5:
        print(f"harvest: ... {len(skipped) - 5} more skipped images listed in metadata.json")

