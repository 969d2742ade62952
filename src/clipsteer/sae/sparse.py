"""TopK hot path that never materialises a dense code or a dense gradient.

A TopK SAE step done naively costs five [N, d_in]×[d_in, d_sae]-sized matmuls: encoder forward, decoder
forward, two for the decoder backward and one for the encoder weight gradient. Only the encoder forward
is really needed: everything after the top-k selection touches k of the d_sae features per token.

- `topk_encode` fuses pre-activation matmul, top-k and ReLU (plus the AuxK selection among dead
  features). Its backward scatters the k (and k_aux) gradients per token straight into the rows of the
  weight gradient — O(N·k·d_in) instead of O(N·d_sae·d_in) — via `embedding_bag`'s weight gradient.
- `sparse_decode` gathers and sums the k selected decoder rows with `embedding_bag(per_sample_weights)`;
  autograd's embedding_bag backward is already sparse in the same sense.

Both run in fp32 on the selected entries even under bf16 autocast (only the big encoder matmul is cast).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def scatter_rows(indices: Tensor, weights: Tensor, src: Tensor, n_rows: int) -> Tensor:
    """out[r] = Σ_{(n, j): indices[n, j] = r} weights[n, j] · src[n].

    indices, weights: [N, j]; src: [N, d] → out: [n_rows, d]. This is exactly the weight gradient of
    `embedding_bag(indices, table, per_sample_weights=weights)` for output gradient `src`, so we let
    torch's (sparse-aware) embedding_bag backward compute it.
    """
    assert indices.shape == weights.shape and indices.shape[0] == src.shape[0], (indices.shape, weights.shape, src.shape)
    table = torch.zeros(n_rows, src.shape[1], dtype=src.dtype, device=src.device, requires_grad=True)
    with torch.enable_grad():
        out = F.embedding_bag(indices, table, per_sample_weights=weights.detach().to(src.dtype), mode="sum")
        (grad,) = torch.autograd.grad(out, table, grad_outputs=src)
    return grad


class _TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, k: int,  # type: ignore[override]
                dead_mask: Tensor | None, k_aux: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        pre = torch.addmm(bias, x, weight)  # [N, d_sae]; bf16 under autocast
        top = pre.topk(k, dim=-1, sorted=False)
        values = top.values.float().relu()
        indices = top.indices
        if k_aux > 0:
            assert dead_mask is not None and int(dead_mask.sum()) >= k_aux, "k_aux exceeds the number of dead features"
            aux = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            aux_values, aux_indices = aux.values.float(), aux.indices
        else:
            aux_values = values.new_zeros(x.shape[0], 0)
            aux_indices = indices.new_zeros(x.shape[0], 0)
        del pre
        ctx.save_for_backward(x, weight, values, indices, aux_indices)
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx: Any, grad_values: Tensor | None, _gi: Any, grad_aux: Tensor | None,  # type: ignore[override]
                 _ga: Any) -> tuple[Tensor | None, ...]:
        x, weight, values, indices, aux_indices = ctx.saved_tensors
        d_sae = weight.shape[1]
        if grad_values is None:
            grad_values = torch.zeros_like(values)
        g = grad_values * (values > 0)  # ReLU after top-k; the selection itself passes gradients through
        idx = indices
        if aux_indices.shape[1] > 0 and grad_aux is not None:
            idx = torch.cat([indices, aux_indices], dim=1)
            g = torch.cat([g, grad_aux], dim=1)
        g = g.float()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[2]:
            grad_b = torch.zeros(d_sae, dtype=torch.float32, device=g.device).index_add_(0, idx.reshape(-1), g.reshape(-1))
            grad_b = grad_b.to(weight.dtype)
        if ctx.needs_input_grad[1]:
            grad_w = scatter_rows(idx, g, x.float(), d_sae).t().to(weight.dtype)  # [d_in, d_sae]
        if ctx.needs_input_grad[0]:
            grad_x = F.embedding_bag(idx, weight.t().float().contiguous(), per_sample_weights=g, mode="sum").to(x.dtype)
        return grad_x, grad_w, grad_b, None, None, None


def topk_encode(x: Tensor, weight: Tensor, bias: Tensor, k: int, dead_mask: Tensor | None = None,
                k_aux: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ReLU(top-k(x·W + bias)) in sparse form, plus the AuxK selection.

    x: [N, d_in]; weight: [d_in, d_sae]; bias: [d_sae]; dead_mask: bool [d_sae] (needed when k_aux > 0).
    Returns values [N, k] (≥ 0, fp32), indices [N, k] (int64, distinct per row), and the k_aux largest
    *raw* pre-activations among dead features with their indices ([N, k_aux] each; empty when k_aux = 0).
    """
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0] or bias.shape != (weight.shape[1],):
        raise ValueError(f"topk_encode: shapes x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias "
                         f"{tuple(bias.shape)}; expected [N, d_in], [d_in, d_sae], [d_sae]")
    if not 1 <= k <= weight.shape[1]:
        raise ValueError(f"topk_encode: k={k} must be in 1..d_sae={weight.shape[1]}")
    return _TopKEncode.apply(x, weight, bias, k, dead_mask, k_aux)  # type: ignore[no-any-return]


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Σ_j values[n, j] · W_dec[indices[n, j]]: values, indices [N, k]; W_dec [d_sae, d_in] → [N, d_in]."""
    if values.shape != indices.shape or values.ndim != 2:
        raise ValueError(f"sparse_decode: values {tuple(values.shape)} and indices {tuple(indices.shape)} "
                         "must both be [N, k]")
    if indices.shape[1] == 0:
        return W_dec.new_zeros(values.shape[0], W_dec.shape[1])
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")
