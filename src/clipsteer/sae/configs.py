"""Configs of the SAE commands (train, export, push) and of distributed launches, importable without torch
(so `clipsteer train --help` is instant). The training recipe's own configs live in `sae.recipe`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from clipsteer.models.sites import TokenSelection
from clipsteer.sae.config import Architecture, Normalization
from clipsteer.sae.recipe import ObjectiveConfig, RecipeName, TrainerConfig

Mode = Literal["none", "recipes", "data"]


Backend = Literal["auto", "nccl", "gloo"]


@dataclass(frozen=True)
class LaunchConfig:
    """How the processes of a torchrun job talk (nested as `--dist.*`; ignored in a single process)."""

    backend: Backend = "auto"
    """Process-group backend: auto picks nccl for CUDA devices and gloo on CPU."""
    timeout_s: float = 1800.0
    """How long a rank waits for the others (joining, a collective, a barrier) before the job fails. A rank
    that finishes its share first waits for the slowest at a barrier, so keep it above that spread."""


@dataclass(frozen=True)
class DistributedConfig(LaunchConfig):
    """How `clipsteer train` launched by torchrun shares its work (nested as `--dist.*`)."""

    mode: Mode = "none"
    """recipes: the SAEs of a sweep are spread across ranks (no communication); data: every SAE is trained
    data-parallel (each rank reads its slice of every global batch, gradients averaged). none: a single
    process (an error under a multi-process launch)."""


@dataclass(frozen=True)
class TrainConfig:
    store: Path | None = None
    """An activation store folder (written by `clipsteer harvest`). Required."""
    out: Path = Path("runs/sae")
    """Run folder: config.json, metrics.jsonl, checkpoints/, saes/<name>/."""
    tokens: TokenSelection = "all"
    """Train on all tokens, the CLS token only, or patch tokens only."""
    architecture: Architecture = "relu"
    """SAE variant: relu (the paper's vanilla, L1), topk, batchtopk or jumprelu."""
    expansion_factor: int = 64
    """d_sae = expansion_factor · d_in (the paper: 64)."""
    k: int = 64
    """Active features per token for topk / batchtopk (the paper's TopK SAEs: 64)."""
    recipe: RecipeName = "default"
    """`paper`: the paper's recipe exactly (see `clipsteer.sae.recipe.RECIPES`); settings that are still at
    the default recipe's values (normalization, objective.reconstruction, objective.sparsity_warmup_steps,
    trainer.encoder_init, trainer.max_grad_norm) take it."""
    normalization: Normalization | None = None
    """Input normalisation (None: the recipe's, layer_norm for both)."""
    objective: ObjectiveConfig = ObjectiveConfig()
    trainer: TrainerConfig = TrainerConfig()
    sweep_sparsity: tuple[float, ...] = ()
    """Train one SAE per sparsity coefficient λ (relu / jumprelu), all on the same batches."""
    sweep_k: tuple[int, ...] = ()
    """Train one SAE per k (topk / batchtopk), all on the same batches."""
    resume: bool = True
    """Continue from the newest checkpoint in `out` when there is one."""
    dist: DistributedConfig = DistributedConfig()
    """How ranks share the work when launched by torchrun (ignored in a single process)."""


ExportFormat = Literal["saelens", "prisma"]


@dataclass(frozen=True)
class ExportConfig:
    sae: Annotated[str, tyro.conf.Positional]
    """The SAE: a clipsteer, SAELens or Prisma folder, a Prisma .pt file, or hf://org/repo[/subfolder]."""
    format: ExportFormat = "saelens"
    """Target library: saelens (cfg.json + sae_weights.safetensors) or prisma (config.json + weights.pt)."""
    out: Path | None = None
    """Output folder; default: `<sae>_<format>` beside the SAE."""


@dataclass(frozen=True)
class PushConfig:
    sae: Annotated[Path, tyro.conf.Positional]
    """The SAE folder (clipsteer, SAELens or Prisma)."""
    repo: Annotated[str, tyro.conf.Positional]
    """Target repository, `org/repo` (created if absent)."""
    subfolder: str | None = None
    """Upload into this folder of the repository (several SAEs per repository)."""
    eval: Path | None = None
    """`clipsteer eval`'s eval.json; default: eval.json inside the SAE folder, if there."""
    run: Path | None = None
    """The training run folder; default: the run that holds `<run>/saes/<name>/`."""
    private: bool = False
    """Create the Hub repository as private."""
    dry_run: Path | None = None
    """Only write the folder that would be uploaded (card included) here; nothing is sent."""
