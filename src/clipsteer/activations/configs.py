"""Configs of the activation commands (harvest, check), importable without torch (instant `--help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from clipsteer.models.sites import TokenSelection
from clipsteer.sae.configs import LaunchConfig

StoreDtype = Literal["float16", "bfloat16"]


NonFinite = Literal["refuse", "record"]


@dataclass(frozen=True)
class HarvestConfig:
    sites: tuple[str, ...] = ()
    """Hook sites, e.g. blocks.2.resid_post; several sites share one forward (it stops after the deepest). Required."""
    out: Path = Path("runs/activations")
    """Output directory; each site's store is written to OUT/<site>/."""
    model: str | None = None
    """A CLIP checkpoint folder or hub id (default: the toy CLIP shipped with clipsteer)."""
    dataset: str = "world:train"
    """An image folder path, or a registered source such as world:<split> (the synthetic world)."""
    match_dataset_to_model: bool = True
    """Open the dataset as the model sees it (`ModelMatched`: world: specs render the toy CLIP's own world);
    False opens it as named (the default world), e.g. to train SAEs on images the model was not trained on."""
    tokens: TokenSelection = "all"
    """Which tokens to store: all (CLS + patches), cls, or patches. Loaders can select from an all-token store."""
    images_per_batch: int = 64
    """Images per forward (part of the store's fingerprint: a resume must use the same value)."""
    shard_rows: int = 65536
    """Rows per shard file (the unit of resume)."""
    dtype: StoreDtype = "float16"
    """Storage dtype of the rows."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    max_images: int | None = None
    """Harvest only the first N images of the dataset."""
    workers: int = 2
    """Background threads decoding and preprocessing images (0: decode in the main thread)."""
    nonfinite: NonFinite = "refuse"
    """A NaN/inf activation: refuse (stop, naming the images) or record (store it, list the images in metadata.json)."""
    dist: LaunchConfig = LaunchConfig()
    """How the ranks talk when launched by torchrun (each harvests its own part; ignored in a single process)."""


@dataclass(frozen=True)
class CheckConfig:
    store: tyro.conf.Positional[Path]
    """An activation store folder (written by `clipsteer harvest`)."""
    progress: bool = True
    """Show a progress bar."""
