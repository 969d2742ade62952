"""What to train (`SAERecipe`: a named SAE architecture + its objective) and how (`TrainerConfig`).

Defaults follow the paper's recipe (Prisma code, Nov 2024): Adam with default betas, lr 4e-4 with
200 linear warm-up steps then cosine decay to lr/10, batches of 4096 tokens, gradient clipping at 1.0,
b_dec at the geometric median of a sample, dead-feature window 5000 steps, sampling window 1000 steps,
and ~130 M tokens (2.6 M ImageNet images × 50 tokens, the released vanilla SAEs' checkpoint name) —
with three exceptions, each measured (benchmarks/results/peers.md):
- the encoder's initial scale (`encoder_init="fitted_scale"`): the paper's W_enc = W_decᵀ makes a ReLU
  SAE's first reconstructions ≈ d_sae/(2·d_in) times too large (held-out EV −54 at ×16 on the toy CLIP),
  and the first ~100k tokens are spent undoing that;
- the gradient clip of ReLU SAEs (`max_grad_norm="per_architecture"`: 0.02 for relu, the paper's 1.0 for
  the others; `architectures.ArchSpec.max_grad_norm` says why);
- a λ warm-up (`ObjectiveConfig.sparsity_warmup_steps`: 60 steps; the paper has none).

`RECIPES` names the settings that differ: `RECIPES["paper"]` is the paper's recipe exactly
(`clipsteer train --recipe paper`), `RECIPES["default"]` clipsteer's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from clipsteer.sae.config import Normalization, SAEConfig

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")


@dataclass(frozen=True)
class ObjectiveConfig:
    sparsity_coefficient: float = 1e-4
    """λ: the L1 coefficient (relu) or L0 coefficient (jumprelu); ignored by topk/batchtopk.
    1e-4 is the λ of the SAEs used in the paper's steering notebooks."""
    sparsity_warmup_steps: int = 60
    """Steps over which λ rises linearly from 0 (relu, jumprelu; 0: none, as in the paper). Without it a sparse
    ReLU SAE keeps more features that fire on no held-out row (d=768 ×16, 1M tokens, L0 ≈ 76: 26.9 %, with 12
    steps 7.7 %, with 60 steps 4.5 %; dictionary_learning 5.3 %); denser λ barely move (peers.md §18)."""
    reconstruction: Literal["paper", "mse"] = "paper"
    """paper: the paper's normalised reconstruction loss; mse: plain mean squared error."""
    ghost_grads: bool = True
    """Ghost grads for dead features (relu and jumprelu only)."""
    auxk_coefficient: float = 1 / 32
    """AuxK loss weight α (topk and batchtopk only; 0 disables), relative to the main loss in normalised-MSE
    units as in Gao et al. (the term is converted into the reconstruction loss's units)."""
    auxk_k: int | None = None
    """Dead features used by AuxK per token (None: d_in // 2, as in Gao et al.)."""
    jumprelu_bandwidth: float = 1e-3
    """Width ε of the straight-through rectangle kernel."""
    jumprelu_init_threshold: float = 1e-3
    """JumpReLU thresholds at initialisation."""
    batchtopk_threshold_momentum: float = 0.99
    """BatchTopK: EMA momentum of the inference threshold (the smallest kept activation per batch)."""

    def __post_init__(self) -> None:
        if self.sparsity_coefficient < 0 or self.auxk_coefficient < 0:
            raise ValueError("ObjectiveConfig: sparsity_coefficient and auxk_coefficient must be >= 0")
        if self.sparsity_warmup_steps < 0:
            raise ValueError("ObjectiveConfig.sparsity_warmup_steps must be >= 0")
        if self.jumprelu_bandwidth <= 0 or self.jumprelu_init_threshold <= 0:
            raise ValueError("ObjectiveConfig: jumprelu_bandwidth and jumprelu_init_threshold must be > 0")
        if not 0 <= self.batchtopk_threshold_momentum < 1:
            raise ValueError("ObjectiveConfig.batchtopk_threshold_momentum must be in [0, 1)")
        if self.auxk_k is not None and self.auxk_k <= 0:
            raise ValueError("ObjectiveConfig.auxk_k must be positive or None")


EncoderInit = Literal["fitted_scale", "decoder_transpose"]


@dataclass(frozen=True)
class RecipePreset:
    """The settings in which clipsteer's default training recipe and the paper's differ."""

    normalization: Normalization
    reconstruction: Literal["paper", "mse"]
    encoder_init: EncoderInit
    max_grad_norm: float | Literal["per_architecture"] | None
    sparsity_warmup_steps: int


RECIPES: dict[str, RecipePreset] = {
    "default": RecipePreset(normalization="layer_norm", reconstruction="paper", encoder_init="fitted_scale",
                            max_grad_norm="per_architecture",
                            sparsity_warmup_steps=ObjectiveConfig().sparsity_warmup_steps),
    "paper": RecipePreset(normalization="layer_norm", reconstruction="paper", encoder_init="decoder_transpose",
                          max_grad_norm=1.0, sparsity_warmup_steps=0),
}
RecipeName = Literal["default", "paper"]


@dataclass(frozen=True)
class SAERecipe:
    name: str
    """Unique within a run; used as a folder name (letters, digits, . _ = + -)."""
    sae: SAEConfig
    objective: ObjectiveConfig = ObjectiveConfig()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"SAERecipe.name={self.name!r}: expected letters, digits and . _ = + - "
                             "(it becomes a folder name)")


@dataclass(frozen=True)
class TrainerConfig:
    tokens_per_batch: int = 4096
    """Tokens per step (the paper: 4096)."""
    total_tokens: int = 130_000_000
    """Training length in tokens; steps = ceil(total_tokens / tokens_per_batch)."""
    lr: float = 4e-4
    """Adam learning rate (after warm-up)."""
    lr_warmup_steps: int = 200
    """Linear learning-rate warm-up steps."""
    lr_end_factor: float = 0.1
    """Cosine decay ends at lr · lr_end_factor (the paper: lr/10)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """Adam (β1, β2)."""
    max_grad_norm: float | Literal["per_architecture"] | None = "per_architecture"
    """Gradient clipping by global norm per SAE (None: off). `per_architecture`: the architecture's
    `max_grad_norm` (relu 0.02, others 1.0); the paper clips every SAE at 1.0 (`--recipe paper`)."""
    gradient_rescale: float = 0.0
    """p in [0, 1]: a step's gradient whose norm n is below the clip c reaches Adam scaled up by (c/n)^p, at norm
    c^p·n^(1−p). 0 only clips (the default and the paper); 1 gives every step norm c, so that Adam sees gradients
    of one size. A TopK SAE's gradient norm under the paper's loss falls ≈ 30× over a run (d=768 ×64: 1.3e-2 at the
    start, 3.6e-4–6.3e-4 from a quarter of the way on) while Adam (β2 0.999) keeps dividing by the early ones. With
    p = 1, TopK at d=768 after 1M tokens ended at 0.9632 EV (×64; dictionary_learning 0.9632, the default 0.9508)
    and 0.9645 (×16), but at d=128 (4M tokens) more features stayed dead (×64 0.467–0.474 against the default's
    0.260–0.283); p = 0.25 and 0.5 land in between in EV at both (benchmarks/results/peers.md §17, §20, §21)."""
    bias_lr_factor: float = 1.0
    """b_enc's and b_dec's learning rate as a multiple of `lr` (1: the same). The biases live in the units of the
    SAE's (normalised) input while the unit-norm decoder and the encoder do not, so how far a step moves them
    relative to the data depends on the input's scale (benchmarks/results/peers.md §21). TopK with 0.05, a gradient
    rescale of 1 and `encoder_init="decoder_transpose"` comes within 0.0015 of the best peer's EV with no more dead
    features at every width measured, but its SAEs defend far worse against the toy's typographic attacks (§22):
    opt-in."""
    b_dec_init: Literal["geometric_median", "mean", "zeros"] = "geometric_median"
    """Decoder bias at initialisation: the geometric median or mean of a sample, or zeros."""
    encoder_init: EncoderInit = "fitted_scale"
    """`decoder_transpose`: W_enc = W_decᵀ (the paper). `fitted_scale`: then scaled by the factor that makes
    the initial reconstruction of the init sample least-squares closest to it, or as large as it, widened above
    ×16 and capped (TopK; `architectures.EncoderScale`, `fit_encoder_scale_`)."""
    init_samples: int = 16384
    """Rows read from the start of the stream for b_dec initialisation and the constant-scale estimate."""
    dead_feature_window: int = 5000
    """Steps without firing after which a feature counts as dead (ghost grads / AuxK apply to it)."""
    feature_sampling_window: int = 1000
    """Steps per firing-frequency summary (dense / never-fired fractions)."""
    dense_threshold: float = 0.1
    """A feature firing on more than this fraction of tokens in a window counts as dense."""
    autocast_bf16: bool = False
    """Run the matmuls under bf16 autocast (parameters and optimizer state stay fp32)."""
    device: str = "cpu"
    """torch device: cpu, cuda, cuda:1, …"""
    seed: int = 42
    """Seeds the data stream order and the SAE initialisation (SAEs of equal shape start identical)."""
    log_every: int = 50
    """Write a metrics.jsonl line every this many steps."""
    checkpoint_every: int = 1000
    """Save a resumable checkpoint every this many steps."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (older ones are deleted)."""
    loggers: tuple[Literal["wandb", "tensorboard"], ...] = ()
    """Extra metric sinks besides metrics.jsonl; each needs its package installed."""
    wandb_project: str = "clipsteer"
    """The Weights & Biases project when `loggers` includes wandb."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def __post_init__(self) -> None:
        positive = ("tokens_per_batch", "total_tokens", "init_samples", "log_every", "checkpoint_every",
                    "keep_checkpoints", "feature_sampling_window")
        for field in positive:
            if getattr(self, field) <= 0:
                raise ValueError(f"TrainerConfig.{field}={getattr(self, field)}: expected a positive integer")
        if not (_is_number(self.bias_lr_factor) and self.bias_lr_factor > 0):
            raise ValueError(f"TrainerConfig.bias_lr_factor={self.bias_lr_factor!r}: expected a positive number")
        if self.lr <= 0 or not 0 < self.lr_end_factor <= 1:
            raise ValueError(f"TrainerConfig: lr={self.lr} must be > 0 and lr_end_factor={self.lr_end_factor} in (0, 1]")
        if self.lr_warmup_steps < 0 or self.dead_feature_window < 0:
            raise ValueError("TrainerConfig: lr_warmup_steps and dead_feature_window must be >= 0")
        clip = self.max_grad_norm
        if clip is not None and clip != "per_architecture" and not (_is_number(clip) and clip > 0):
            raise ValueError(f"TrainerConfig.max_grad_norm={clip!r}: expected a positive number, 'per_architecture' "
                             "or None (no clipping)")
        rescale = self.gradient_rescale
        if not (_is_number(rescale) and 0 <= rescale <= 1):
            raise ValueError(f"TrainerConfig.gradient_rescale={rescale!r}: expected a number in [0, 1]")
        if rescale > 0 and clip is None:
            raise ValueError(f"TrainerConfig.gradient_rescale={rescale} rescales gradients towards the norm "
                             "max_grad_norm, which is None: set --trainer.max-grad-norm")

    @property
    def total_steps(self) -> int:
        return math.ceil(self.total_tokens / self.tokens_per_batch)


def _is_number(value: object) -> bool:
    """An int or float that is not a bool (True is an int to Python); NaN passes here and fails any comparison."""
    return isinstance(value, int | float) and not isinstance(value, bool)


# Fields that may differ between an interrupted run and its resumption without changing the result.
NON_SEMANTIC_FIELDS = ("log_every", "checkpoint_every", "keep_checkpoints", "loggers", "wandb_project", "progress")
