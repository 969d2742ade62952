"""Geometric median by Weiszfeld's algorithm: the point minimising Σ_i ‖x_i − y‖ (used to initialise b_dec).

Each iteration is a weighted mean with weights 1/‖x_i − y‖ (floored at `eps` so a data point that
coincides with the estimate cannot divide by zero). Starts from the coordinate-wise mean.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def geometric_median(points: Tensor, max_iter: int = 100, tol: float = 1e-6, eps: float = 1e-8) -> Tensor:
    """points: [n, d] → [d] (float32). Stops when the estimate moves less than tol·(1 + ‖y‖)."""
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"geometric_median: expected a non-empty [n, d] tensor, got {tuple(points.shape)}")
    x = points.float()
    y = x.mean(dim=0)
    for _ in range(max_iter):
        weights = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * x).sum(dim=0) / weights.sum()
        moved = float((new - y).norm())
        y = new
        if moved <= tol * (1.0 + float(y.norm())):
            break
    assert torch.isfinite(y).all(), "geometric_median produced non-finite values"
    return y
