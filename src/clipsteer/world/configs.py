"""Configs of the world commands (`clipsteer world …`), importable without torch (instant `--help`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clipsteer.models.names import TOY_CLIP
from clipsteer.world.config import WorldConfig


@dataclass(frozen=True)
class WorldEvalConfig:
    checkpoint: str = TOY_CLIP
    """A toy-CLIP folder (with world.json); default: the checkpoint shipped with the package."""
    split: str = "test"
    """Evaluation split: train, val or test."""
    json: bool = False
    """Print one JSON object instead of a readable summary."""
    n_zero_shot: int = 2000
    """Images for zero-shot accuracy (and again for the class-balanced set)."""
    n_group: int = 2000
    """Images per group task (n/4 per group)."""
    n_typographic: int = 1000
    """Image triples (clean, attacked, blank)."""
    templates: tuple[str, ...] = ("a photo of a {}",)
    """Prompt templates over the shape names."""
    images_per_batch: int = 500
    """Images per forward pass."""
    threads: int = 2
    """torch CPU threads."""
    out: Path | None = None
    """Also write the JSON here."""


@dataclass(frozen=True)
class ToyClipArch:
    """Tower sizes. Defaults: 8×8 patches of 8 px + CLS = 65 vision tokens, width 128, 4 blocks."""

    vision_width: int = 128
    """Vision transformer width (d_model)."""
    vision_layers: int = 4
    """Vision transformer blocks."""
    text_width: int = 128
    """Text transformer width."""
    text_layers: int = 3
    """Text transformer blocks."""
    heads: int = 4
    """Attention heads in both towers."""
    mlp_ratio: int = 4
    """MLP width as a multiple of the tower width."""
    projection_dim: int = 128
    """Shared embedding width."""


@dataclass(frozen=True)
class TrainClipConfig:
    out: Path = Path("runs/toy_clip")
    """Run folder: state.pt (resume), train.log, and the exported HF checkpoint in out/final."""
    steps: int = 3000
    """Optimiser steps (the cosine schedule's length)."""
    batch_size: int = 128
    """Image–caption pairs per step."""
    lr: float = 2e-3
    """Peak AdamW learning rate."""
    warmup: int = 150
    """Linear warm-up steps."""
    weight_decay: float = 0.1
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    seed: int = 0
    """Seeds the model's initialisation and the data stream."""
    threads: int = 2
    """torch CPU threads."""
    workers: int = 1
    """DataLoader worker processes rendering the stream (0 renders in the training process)."""
    bf16: bool = False
    """Autocast the forward pass to bfloat16. Pays only on CPUs with native bf16 (AVX-512 BF16 / AMX): on an AVX2
    CPU a step took ≈ 25 s with it and ≈ 2.6 s without (1 thread, shared machine). The shipped toy CLIP used it."""
    checkpoint_every: int = 200
    """Save a resumable state every this many steps."""
    probe_every: int = 250
    """Every N steps log zero-shot accuracy on clean images and on text-only images (0 disables)."""
    probe_images: int = 512
    """Images per zero-shot probe."""
    log_every: int = 20
    """Write a JSON line (mean loss of the last `log_every` steps, lr, throughput) to train.log."""
    resume: bool = True
    """Continue from out/state.pt when it exists."""
    time_budget_s: float = 0.0
    """If > 0, the cosine schedule runs on wall time: progress = max(step/steps, elapsed/budget) and the run
    ends when it reaches 1. For shared or unknown CPUs; the step count reached is recorded in world.json."""
    stop_after: int = 0
    """If > 0, save state and return after this many steps in this invocation (resume later)."""
    arch: ToyClipArch = field(default_factory=ToyClipArch)
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.batch_size < 2 or self.lr <= 0 or self.warmup < 0:
            raise ValueError("need steps > 0, batch_size >= 2, lr > 0, warmup >= 0")


@dataclass(frozen=True)
class ShowConfig:
    out: Path = Path("world_samples.png")
    """The PNG grid to write."""
    task: str = "pretraining"
    """One of: pretraining, zero_shot, zero_shot_balanced, background, attribute, typographic."""
    split: str = "train"
    """train, val or test."""
    variant: str = ""
    """Typographic: clean, attacked or blank (default: all three side by side per item)."""
    n: int = 24
    """Images to show."""
    columns: int = 6
    """Images per row."""
    scale: int = 3
    """Pixel upscaling of each 64×64 image."""
    world: WorldConfig = field(default_factory=WorldConfig)
