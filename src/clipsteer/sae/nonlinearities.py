"""Dense activation functions used by the SAE variants in `clipsteer.sae.architectures` (the sparse TopK path
lives in `clipsteer.sae.sparse`).

JumpReLU uses the straight-through estimator of Rajamanoharan et al. (2024): the Heaviside step H(z − θ)
has zero gradient almost everywhere, so its derivative with respect to the threshold θ is replaced by a
rectangle kernel of width ε (the bandwidth): ∂/∂θ H(z − θ) ≈ −(1/ε)·K((z − θ)/ε), K = 1 on (−½, ½).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def _rectangle(z: Tensor) -> Tensor:
    return ((z > -0.5) & (z < 0.5)).to(z.dtype)


class _JumpReLU(torch.autograd.Function):
    """f = z·H(z − θ); ∂f/∂z = H(z − θ); ∂f/∂θ = −(θ/ε)·K((z − θ)/ε) (straight-through)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return z * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:  # type: ignore[override]
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_z = grad * (z > threshold).to(grad.dtype)
        kernel = _rectangle((z - threshold) / eps)
        grad_threshold = (-(threshold / eps) * kernel * grad).sum(dim=0).to(threshold.dtype)
        return grad_z, grad_threshold, None


class _Step(torch.autograd.Function):
    """H(z − θ) with ∂/∂θ = −(1/ε)·K((z − θ)/ε) and no gradient to z (used for the L0 penalty)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:  # type: ignore[override]
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = (-(1.0 / eps) * _rectangle((z - threshold) / eps) * grad).sum(dim=0).to(threshold.dtype)
        return None, grad_threshold, None


def jumprelu(z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """z: [N, d_sae], threshold: [d_sae] (> 0) → z·[z > θ], differentiable in θ through the STE."""
    return _JumpReLU.apply(z, threshold, bandwidth)  # type: ignore[no-any-return]


def step(z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """[z > θ] as a float tensor [N, d_sae], differentiable in θ through the STE."""
    return _Step.apply(z, threshold, bandwidth)  # type: ignore[no-any-return]


def batch_topk(z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Training-time BatchTopK: keep the k·N largest ReLU(z) entries of the whole batch z [N, d_sae].

    Returns (codes [N, d_sae], the smallest kept positive value — the batch's threshold estimate, a 0-d
    tensor, NaN if nothing positive was kept).
    """
    n, d_sae = z.shape
    acts = z.relu()
    flat = acts.reshape(-1)
    keep = min(k * n, flat.numel())
    top = flat.topk(keep, sorted=False)
    mask = torch.zeros_like(flat, dtype=torch.bool).index_fill_(0, top.indices, True) & (flat > 0)
    codes = (flat * mask.to(flat.dtype)).reshape(n, d_sae)
    with torch.no_grad():  # min over the kept positive values, by masking (a selection would wait for the device)
        smallest = top.values.float().masked_fill(top.values <= 0, math.inf).min()
        smallest = torch.where(smallest.isinf(), math.nan, smallest)
    return codes, smallest
