"""Helpers for store and loader tests: stores written directly through StoreWriter (no model), image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clipsteer.activations.format import SkippedImage, StoreSpec, tokens_layout
from clipsteer.activations.writer import StoreWriter


def make_spec(tokens: str = "all", n_model_tokens: int = 5, d: int = 8, shard_rows: int = 7, n_images: int = 10,
              dtype: str = "float16", images_per_batch: int = 3, **overrides) -> StoreSpec:
    first, t = tokens_layout(tokens, n_model_tokens)
    fields = dict(model_name="fake", model_revision="r0", model_dtype="float32", site="blocks.1.resid_post",
                  tokens=tokens, dtype=dtype, d_model=d, n_tokens_per_image=t, first_token=first,
                  shard_rows=shard_rows, dataset="fake-dataset", dataset_fingerprint="fp0",
                  n_images_requested=n_images, images_per_batch=images_per_batch)
    fields.update(overrides)
    return StoreSpec(**fields)


def labelled_rows(image_indices: np.ndarray, spec: StoreSpec) -> torch.Tensor:
    """Rows whose columns 0 and 1 are (image_index, token_index) — exact in fp16/bf16 for small ints —
    and the rest deterministic noise. [n_images·T, d]."""
    t = spec.n_tokens_per_image
    tok = np.tile(np.arange(spec.first_token, spec.first_token + t), len(image_indices))
    img = np.repeat(image_indices, t)
    g = torch.Generator().manual_seed(int(image_indices.sum()) + len(image_indices))
    x = torch.randn(len(img), spec.d_model, generator=g)
    x[:, 0] = torch.from_numpy(img).float()
    x[:, 1] = torch.from_numpy(tok).float()
    return x


def write_store(directory: Path, spec: StoreSpec, skip: tuple[int, ...] = ()) -> torch.Tensor:
    """Write a complete store as a harvest would (chunks of images_per_batch images); returns all rows (float32)."""
    writer = StoreWriter.open(directory, spec)
    t, row, kept, skipped, all_rows = spec.n_tokens_per_image, 0, 0, [], []
    for start in range(0, spec.n_images_requested, spec.images_per_batch):
        end = min(start + spec.images_per_batch, spec.n_images_requested)
        skipped += [SkippedImage(i, f"img{i}.png", "corrupt") for i in range(start, end) if i in skip]
        images = np.array([i for i in range(start, end) if i not in skip], dtype=np.int64)
        if len(images):
            rows = labelled_rows(images, spec)
            index = np.stack([np.repeat(images, t), rows[:, 1].numpy()], axis=1).astype(np.int32)
            writer.add(row, rows, index, start, end, skipped)
            all_rows.append(rows)
            row += len(rows)
            kept += len(images)
    writer.finish(kept, skipped)
    return torch.cat(all_rows)


def as_stored(x: torch.Tensor, dtype: str = "float16") -> torch.Tensor:
    return x.to(getattr(torch, dtype)).float()


def make_image_folder(root: Path, n: int, size: int = 40, corrupt: tuple[int, ...] = (), seed: int = 0) -> Path:
    """n PNG images img_000.png ... (some grayscale / RGBA); indices in `corrupt` are garbage bytes."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / f"img_{i:03d}.png"
        if i in corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
            continue
        arr = rng.integers(0, 256, (size, size + 6, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        if i % 5 == 1:
            img = img.convert("L")
        elif i % 5 == 2:
            img = img.convert("RGBA")
        img.save(path)
    return root
