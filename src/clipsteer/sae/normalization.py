"""Input normalisation conventions: x ↦ x̃ before encoding, x̂̃ ↦ x̂ after decoding.

- `none`:          x̃ = x.
- `layer_norm`:    per token, x̃ = (x − μ)/(σ + 1e-5) with μ, σ the mean and (unbiased) std over d_in;
                   output x̂ = x̂̃·σ + μ. This is ViT-Prisma's `normalize_activations="layer_norm"`, used by
                   the paper's SAEs; W_dec and b_dec live in the normalised space.
- `constant_scale`: x̃ = c·x with one scalar c = √d_in / E‖x‖ estimated from data before training
                   (SAELens' `expected_average_only_in`); output x̂ = x̂̃ / c. When an SAE is saved the
                   scale is folded into the weights (see `SparseAutoencoder.folded`), so a saved SAE has
                   `normalization="none"` and reads raw activations.
- `token_rescale`: per token, x̃ = x·√d_in/‖x‖; output x̂ = x̂̃·‖x‖/√d_in (Prisma/SAELens
                   `constant_norm_rescale`; supported so those checkpoints load).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LAYER_NORM_EPS = 1e-5


@dataclass(frozen=True)
class NormStats:
    """What `denormalize` needs: x̂ = x̂̃·scale + shift. Per-token tensors are [N, 1]."""

    scale: Tensor | float = 1.0
    shift: Tensor | float = 0.0


def normalize(x: Tensor, kind: str, input_scale: Tensor | None = None) -> tuple[Tensor, NormStats]:
    """x: [N, d_in] → (x̃ [N, d_in], stats)."""
    if kind == "none":
        return x, NormStats()
    if kind == "layer_norm":
        mu = x.mean(dim=-1, keepdim=True)
        centred = x - mu
        # the unbiased std as a norm: one fast reduction (Tensor.std took ~5× longer at 4096×768 on CPU)
        std = torch.linalg.vector_norm(centred, dim=-1, keepdim=True) / math.sqrt(x.shape[-1] - 1)
        denominator = std + LAYER_NORM_EPS
        # in place unless autograd needs `centred` (the norm's backward reads it)
        x_norm = centred / denominator if centred.requires_grad else centred.div_(denominator)
        return x_norm, NormStats(scale=std, shift=mu)
    if kind == "constant_scale":
        assert input_scale is not None, "constant_scale normalisation needs the SAE's input_scale buffer"
        return x * input_scale, NormStats(scale=1.0 / input_scale)
    if kind == "token_rescale":
        norm = x.norm(dim=-1, keepdim=True)
        coeff = math.sqrt(x.shape[-1]) / norm
        return x * coeff, NormStats(scale=norm / math.sqrt(x.shape[-1]))
    raise ValueError(f"unknown normalization {kind!r}; expected none, layer_norm, constant_scale or token_rescale")


def denormalize(y: Tensor, stats: NormStats) -> Tensor:
    """y: [N, d_in] in the normalised space → the raw activation space."""
    if isinstance(stats.scale, float) and stats.scale == 1.0 and isinstance(stats.shift, float) and stats.shift == 0.0:
        return y
    if isinstance(stats.scale, Tensor) and isinstance(stats.shift, Tensor):
        return torch.addcmul(stats.shift, y, stats.scale)  # one [N, d_in] result instead of two
    return y * stats.scale + stats.shift


@torch.no_grad()
def estimate_input_scale(sample: Tensor) -> float:
    """c = √d_in / mean_n ‖x_n‖ for a sample [n, d_in]: after scaling, the average norm is √d_in."""
    if sample.ndim != 2 or sample.shape[0] == 0:
        raise ValueError(f"estimate_input_scale: expected a non-empty [n, d_in] sample, got {tuple(sample.shape)}")
    mean_norm = float(sample.float().norm(dim=-1).mean())
    if not math.isfinite(mean_norm) or mean_norm <= 0:
        raise ValueError(f"estimate_input_scale: mean activation norm is {mean_norm}; expected a positive number")
    return math.sqrt(sample.shape[-1]) / mean_norm
