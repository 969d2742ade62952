"""ReLU SAE training hot path: encoder, ReLU, L1 and decoder in one autograd node, with reused buffers.

Done with separate torch ops, one ReLU training step makes five fresh [N, d_sae] tensors (pre-activations,
codes, the decoder's code gradient, that gradient plus the L1 gradient, the ReLU mask's output) and
several passes over them (bias broadcast, L1 sum, firing max). On CPU a fresh tensor of that size is a
new mmap whose pages fault in on first write: measured ~40 ms for 4096×2048 fp32 on one thread, 5× a
pass over an existing buffer. This node keeps two [N, d_sae] buffers (codes, and the code gradient),
optionally reused across steps through a `Workspace`, and does

    forward:   C = [x̃ | 1]·[W_enc ; b] (one GEMM, bias folded in)    C ← max(C, 0) in place
               s = column sums of C (gives L1 = Σs / N and "fired" = s > 0; one read pass)
               x̂̃ = C·W_dec + b_dec
    backward:  G = g·W_decᵀ (GEMM into the second buffer)           G ← (G + ∂L1/N)·[C > 0] in place
               ∂W_dec = Cᵀ·g;  ∂[W_enc ; b] = [x̃ | 1]ᵀ·G          (the bias gradient comes out of the GEMM)

where b = b_enc − b_dec·W_enc (its gradient reaches b_enc, b_dec and W_enc through autograd). The
numbers equal the plain ops' (tests/sae/test_fused_relu.py); only fp32 without autocast takes this path.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.workspace import Workspace


def _buffer(workspace: Workspace | None, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if workspace is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return workspace.get(name, shape, like)


def _with_ones(x: Tensor) -> Tensor:
    """[N, d] → [N, d + 1] with a last column of ones (folds a bias into a GEMM)."""
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


class _ReLUAutoencode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, W_enc: Tensor, bias: Tensor, W_dec: Tensor,  # type: ignore[override]
                b_dec: Tensor, workspace: Workspace | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        n, d_sae = x.shape[0], W_enc.shape[1]
        x1 = _with_ones(x)
        codes = torch.mm(x1, torch.cat([W_enc, bias[None]], dim=0), out=_buffer(workspace, "codes", (n, d_sae), x))
        codes.clamp_min_(0)
        column_sums = codes.sum(dim=0)
        recon = torch.addmm(b_dec, codes, W_dec)
        l1 = column_sums.sum() / n
        ctx.save_for_backward(x1, W_enc, W_dec, codes)
        ctx.workspace = workspace
        ctx.set_materialize_grads(False)  # else autograd builds a zero [N, d_sae] gradient for the codes
        ctx.mark_non_differentiable(codes, column_sums)
        return recon, l1, codes, column_sums

    @staticmethod
    def backward(ctx: Any, grad_recon: Tensor | None, grad_l1: Tensor | None,  # type: ignore[override]
                 _grad_codes: Any, _grad_sums: Any) -> tuple[Tensor | None, ...]:
        x1, W_enc, W_dec, codes = ctx.saved_tensors
        n, d_sae = codes.shape
        grad = _buffer(ctx.workspace, "grad", (n, d_sae), codes)
        if grad_recon is None:
            grad_recon = torch.zeros(n, W_dec.shape[1], dtype=codes.dtype, device=codes.device)
        torch.mm(grad_recon, W_dec.t(), out=grad)
        if grad_l1 is not None:
            grad.add_(grad_l1 / n)  # ∂(Σ_nj f_nj / N)/∂f = 1/N (f ≥ 0)
        torch.ops.aten.threshold_backward.grad_input(grad, codes, 0.0, grad_input=grad)  # ReLU mask, in place
        grad_x = grad_w = grad_b = grad_w_dec = grad_b_dec = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_wb = torch.mm(x1.t(), grad)  # [d_in + 1, d_sae]
            grad_w, grad_b = grad_wb[:-1], grad_wb[-1]
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad, W_enc.t())
        if ctx.needs_input_grad[3]:
            grad_w_dec = torch.mm(codes.t(), grad_recon)
        if ctx.needs_input_grad[4]:
            grad_b_dec = grad_recon.sum(dim=0)
        return grad_x, grad_w, grad_b, grad_w_dec, grad_b_dec, None


def relu_autoencode(x: Tensor, W_enc: Tensor, bias: Tensor, W_dec: Tensor, b_dec: Tensor,
                    workspace: Workspace | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x [N, d_in] (normalised), W_enc [d_in, d_sae], bias [d_sae] (the effective encoder bias), W_dec [d_sae, d_in],
    b_dec [d_in] → (x̂̃ [N, d_in], L1 = mean_n Σ_j f_nj [], codes f [N, d_sae] ≥ 0, column sums of f [d_sae]).

    Gradients flow through x̂̃ and L1 (not through the codes or column sums, which are for statistics).
    """
    return _ReLUAutoencode.apply(x, W_enc, bias, W_dec, b_dec, workspace)  # type: ignore[no-any-return]
