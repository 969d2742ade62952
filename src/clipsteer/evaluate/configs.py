"""Configs of the evaluation commands, importable without torch (so `clipsteer eval --help` is instant)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvalConfig:
    sae: Path | None = None
    """An SAE: clipsteer folder, SAELens folder (cfg.json) or Prisma folder / .pt file. Required."""
    out: Path | None = None
    """Where eval.json goes; default: the SAE folder (for a .pt file: the folder holding it)."""
    model: str | None = None
    """CLIP checkpoint folder or hub id; default: the toy CLIP shipped with clipsteer."""
    site: str | None = None
    """Default: the site recorded in the SAE's config."""
    dataset: str = "world:pretraining/test"
    """Images for reconstruction metrics (and factor recovery where annotated): a folder or `world:…`."""
    downstream_dataset: str | None = "world:zero_shot/test"
    """Images for downstream fidelity; None: `dataset`. Labelled images give CE recovered."""
    classes: tuple[str, ...] = ()
    """Zero-shot class names for downstream fidelity; default: the downstream dataset's own classes."""
    templates: tuple[str, ...] = ("a photo of a {}",)
    """Prompt templates over class names (the toy CLIP's captions; real CLIP: "a photo of a {}.")."""
    n_images: int = 2000
    """Images for the reconstruction metrics (L0, EV, dead/dense)."""
    n_patch_images: int = 300
    """Images whose patch codes are kept for patch-level factor recovery."""
    n_downstream_images: int = 1000
    """Images for downstream fidelity (CE recovered, embedding cosine, KL)."""
    images_per_batch: int = 100
    """Images per forward pass."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
