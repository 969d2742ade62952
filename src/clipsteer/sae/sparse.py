"""TopK hot path that never materialises a dense code or a dense gradient.

A TopK SAE step done naively costs five [N, d_in]×[d_in, d_sae]-sized matmuls: encoder forward, decoder
forward, two for the decoder backward and one for the encoder weight gradient. Only the encoder forward
is really needed: everything after the top-k selection touches k of the d_sae features per token.

- `topk_encode` fuses pre-activation matmul, top-k and ReLU (plus the AuxK selection among dead
  features). Its backward scatters the k (and k_aux) gradients per token straight into the rows of the
  weight gradient — O(N·k·d_in) instead of O(N·d_sae·d_in).
- `sparse_decode` gathers and sums the k selected decoder rows (`embedding_bag` with
  per_sample_weights); its backward is sparse too.

The selected entries form a sparse [N, d_sae] matrix S with exactly k entries per row, so S is in CSR
layout for free (row pointers 0, k, 2k, ...; no sort). The backward passes are then
    grad W_dec = Sᵀ·grad_out,   grad values = (grad_out·W_decᵀ) sampled at S's pattern (SDDMM),
    grad W_encᵀ = S_gradᵀ·(x̃ − b_dec),   grad b_enc = column sums of S_grad,   grad b_dec = −W_enc·(those sums).
The encoder takes b_dec itself (pre = x̃·W_enc + b_enc − b_dec·W_enc), so the b_dec terms of the W_enc
gradient come out of the same product instead of a separate outer product added to it. Sᵀ·src is computed
by the kernel of embedding_bag's backward (sort by feature, then sum rows): at d_in = 768 it was measured 2–3×
faster than a CSR product on real TopK indices, which concentrate on a subset of features; equal at d_in = 128.
On CPU these small, memory-bound kernels run with one intra-op thread: torch's parallel sparse, sort and
scatter kernels were measured 3–40× slower with 2 threads on a 2-core machine shared with other work,
while the big matmul keeps all threads.
Sparse ops run in fp32 on the selected entries even under bf16 autocast (only the encoder matmul is cast).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from clipsteer.sae.workspace import W_ENC_GRAD, Workspace, plain_fp32


@contextmanager
def serial_on_cpu(device: torch.device) -> Iterator[None]:
    """Run the enclosed (small, memory-bound) CPU kernels with one intra-op thread; a no-op elsewhere."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def rows_csr(indices: Tensor, values: Tensor, n_cols: int) -> Tensor:
    """The sparse [N, n_cols] matrix with values[n, j] at column indices[n, j] (indices, values: [N, j])."""
    n, j = indices.shape
    crow = torch.arange(0, n * j + 1, j, device=indices.device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        # torch 2.11 on CUDA warns of disabled invariant checks even though we opt out explicitly (seen on an H200)
        warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
        return torch.sparse_csr_tensor(crow, indices.reshape(-1), values.reshape(-1), size=(n, n_cols),
                                       check_invariants=False)


def scatter_rows(indices: Tensor, weights: Tensor, src: Tensor, n_rows: int) -> Tensor:
    """out[r] = Σ_{(n, j): indices[n, j] = r} weights[n, j] · src[n]  — i.e. Sᵀ·src.

    indices, weights: [N, j]; src: [N, d] → out: [n_rows, d] (dense).
    """
    assert indices.shape == weights.shape and indices.shape[0] == src.shape[0], (indices.shape, weights.shape, src.shape)
    n, j = indices.shape
    offset2bag = torch.arange(n, device=src.device).repeat_interleave(j)  # token of each selected entry
    bag_size = torch.full((n,), j, dtype=torch.long, device=src.device)    # read only in "mean" mode
    no_max = torch.empty(0, dtype=torch.long, device=src.device)            # read only in "max" mode
    return torch.ops.aten._embedding_bag_dense_backward(  # mode 0 = sum, padding_idx -1 = none
        src, indices.reshape(-1), offset2bag, bag_size, no_max, n_rows, False, 0,
        weights.reshape(-1).to(src.dtype), -1)


def gather_dots(indices: Tensor, a: Tensor, table: Tensor) -> Tensor:
    """out[n, j] = a[n] · table[indices[n, j]]: indices [N, j], a [N, d], table [m, d] → [N, j] (SDDMM)."""
    pattern = rows_csr(indices, torch.zeros(indices.shape, dtype=a.dtype, device=a.device), table.shape[0])
    sampled = torch.sparse.sampled_addmm(pattern, a, table.t(), beta=0.0)
    return sampled.values().reshape(indices.shape)


class _TopKEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, b_enc: Tensor, b_dec: Tensor | None, k: int,  # type: ignore[override]
                dead_mask: Tensor | None, k_aux: int, workspace: Workspace | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        bias = b_enc if b_dec is None else b_enc - b_dec @ weight  # [d_sae]: pre = (x − b_dec)·W + b_enc
        if workspace is not None and plain_fp32(x, weight):  # reuse the [N, d_sae] buffer (no page faults)
            pre = torch.addmm(bias, x, weight, out=workspace.get("pre", (x.shape[0], weight.shape[1]), x))
        else:
            pre = torch.addmm(bias, x, weight)  # [N, d_sae]; bf16 under autocast
        top = pre.topk(k, dim=-1, sorted=False)
        values = top.values.float().relu()
        indices = top.indices
        if k_aux > 0:
            assert dead_mask is not None, "k_aux > 0 needs the dead-feature mask"  # with ≥ k_aux True (the caller's)
            # in place: the main selection is done with `pre`, and a copy of it would page-fault in every step
            # (d=768 ×64 on one shared CPU core: 4.8 s with the copy, 3.4 s without; benchmarks/auxk_select.py)
            aux = pre.masked_fill_(~dead_mask, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            aux_values, aux_indices = aux.values.float(), aux.indices
        else:
            aux_values = values.new_zeros(x.shape[0], 0)
            aux_indices = indices.new_zeros(x.shape[0], 0)
        del pre
        ctx.save_for_backward(x, weight, b_dec, values, indices, aux_indices)
        ctx.workspace = workspace
        ctx.mark_non_differentiable(indices, aux_indices)
        return values, indices, aux_values, aux_indices

    @staticmethod
    def backward(ctx: Any, grad_values: Tensor | None, _gi: Any, grad_aux: Tensor | None,  # type: ignore[override]
                 _ga: Any) -> tuple[Tensor | None, ...]:
        x, weight, b_dec, values, indices, aux_indices = ctx.saved_tensors
        d_in, d_sae = weight.shape
        if grad_values is None:
            grad_values = torch.zeros_like(values)
        g = grad_values * (values > 0)  # ReLU after top-k; the selection itself passes gradients through
        idx = indices
        if aux_indices.shape[1] > 0 and grad_aux is not None:
            idx = torch.cat([indices, aux_indices], dim=1)
            g = torch.cat([g, grad_aux], dim=1)
        g = g.float()
        grad_x = grad_w = grad_b_enc = grad_b_dec = None
        with serial_on_cpu(g.device):
            if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
                column_sums = torch.zeros(d_sae, dtype=torch.float32, device=g.device)
                column_sums.index_add_(0, idx.reshape(-1), g.reshape(-1))  # ∂loss/∂bias
                grad_b_enc = column_sums.to(weight.dtype)
                if b_dec is not None and ctx.needs_input_grad[3]:
                    grad_b_dec = -(weight @ grad_b_enc)
            if ctx.needs_input_grad[1]:
                centred = x.float() if b_dec is None else x.float() - b_dec.float()
                rows = scatter_rows(idx, g, centred, d_sae)  # [d_sae, d_in]
                # into W_enc's layout, in the buffer of last step's gradient when the updater handed it back
                grad_w = _take(ctx.workspace, W_ENC_GRAD, (d_in, d_sae), weight).copy_(rows.t())
            if ctx.needs_input_grad[0]:
                grad_x = torch.sparse.mm(rows_csr(idx, g, d_sae), weight.t().float()).to(x.dtype)
        return grad_x, grad_w, grad_b_enc, grad_b_dec, None, None, None, None


def _take(workspace: Workspace | None, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if workspace is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    return workspace.take(name, shape, like)


def topk_encode(x: Tensor, weight: Tensor, bias: Tensor, k: int, dead_mask: Tensor | None = None,
                k_aux: int = 0, workspace: Workspace | None = None,
                b_dec: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """ReLU(top-k((x − b_dec)·W + bias)) in sparse form, plus the AuxK selection.

    x: [N, d_in]; weight: [d_in, d_sae]; bias: [d_sae]; dead_mask: bool [d_sae] (needed when k_aux > 0, with at
    least k_aux True entries: not checked here, which would wait for the device; too few make the AuxK loss
    non-finite, which the updater reports); b_dec: [d_in] or None (nothing subtracted). The pre-activation is
    x·W + (bias − b_dec·W), the same number as `SparseAutoencoder.pre_activations`; gradients reach W, bias and
    b_dec from this one node.
    Returns values [N, k] (≥ 0, fp32), indices [N, k] (int64, distinct per row), and the k_aux largest
    *raw* pre-activations among dead features with their indices ([N, k_aux] each; empty when k_aux = 0).
    A `workspace` keeps the [N, d_sae] pre-activation buffer between calls (fp32 without autocast), and
    the W gradient is written into the buffer given back to it under `W_ENC_GRAD`, if any.
    """
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[0] or bias.shape != (weight.shape[1],):
        raise ValueError(f"topk_encode: shapes x {tuple(x.shape)}, weight {tuple(weight.shape)}, bias "
                         f"{tuple(bias.shape)}; expected [N, d_in], [d_in, d_sae], [d_sae]")
    if b_dec is not None and b_dec.shape != (weight.shape[0],):
        raise ValueError(f"topk_encode: b_dec has shape {tuple(b_dec.shape)}; expected [d_in={weight.shape[0]}]")
    if not 1 <= k <= weight.shape[1]:
        raise ValueError(f"topk_encode: k={k} must be in 1..d_sae={weight.shape[1]}")
    return _TopKEncode.apply(x, weight, bias, b_dec, k, dead_mask, k_aux, workspace)  # type: ignore[no-any-return]


class _SparseDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(values, indices, W_dec)
        with serial_on_cpu(values.device):
            return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, None, Tensor | None]:  # type: ignore[override]
        values, indices, W_dec = ctx.saved_tensors
        grad_values = grad_w = None
        grad_out = grad_out.to(W_dec.dtype)
        with serial_on_cpu(grad_out.device):
            if ctx.needs_input_grad[0]:
                grad_values = gather_dots(indices, grad_out, W_dec).to(values.dtype)
            if ctx.needs_input_grad[2]:
                grad_w = scatter_rows(indices, values.to(W_dec.dtype), grad_out, W_dec.shape[0])
        return grad_values, None, grad_w


def sparse_decode(values: Tensor, indices: Tensor, W_dec: Tensor) -> Tensor:
    """Σ_j values[n, j] · W_dec[indices[n, j]]: values, indices [N, k]; W_dec [d_sae, d_in] → [N, d_in]."""
    if values.shape != indices.shape or values.ndim != 2:
        raise ValueError(f"sparse_decode: values {tuple(values.shape)} and indices {tuple(indices.shape)} "
                         "must both be [N, k]")
    if indices.shape[1] == 0:
        return W_dec.new_zeros(values.shape[0], W_dec.shape[1])
    return _SparseDecode.apply(values, indices, W_dec)  # type: ignore[no-any-return]
