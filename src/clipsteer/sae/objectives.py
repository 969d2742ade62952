"""Training objectives: reconstruction + sparsity + dead-feature terms, per architecture.

Reconstruction (`reconstruction="paper"`, the authors' code): with x the raw input [N, d_in] and x̂ the
de-normalised reconstruction,
    MSE_norm = mean_{n,i} (x̂_ni − x_ni)² / ‖x_n − mean_batch(x)‖₂
(elementwise squared error divided by the per-token norm of the batch-centred input — a norm, not its
square). `reconstruction="mse"` is the plain mean squared error.

Sparsity, with λ = `sparsity_coefficient` warmed up linearly over `sparsity_warmup_steps`:
- relu:      λ · mean_n ‖f_n‖₁ (decoder rows have unit norm, so no decoder-norm weighting is needed)
- jumprelu:  λ · mean_n Σ_j H(pre_nj − θ_j), the L0 norm with the straight-through threshold gradient
- topk, batchtopk: none (k fixes the sparsity)

Dead features (no activation for `dead_feature_window` steps, tracked by the trainer):
- ghost grads (relu / jumprelu, paper style, after Anthropic): dead features' exp(pre) decode a vector
  that is rescaled to half the residual's norm and regressed onto the residual; the term is rescaled
  element-wise so its value equals the reconstruction loss. The residual is taken in the decoder's
  (normalised) space, where W_dec lives; with `normalization="none"` this is the paper's formula, and
  with layer norm it differs from Prisma's only by the per-token positive factor σ that Prisma's version
  mixes in.
- AuxK (topk / batchtopk, Gao et al. 2024): the k_aux largest pre-activations among dead features
  reconstruct the residual; loss = α·min(n_dead/k_aux, 1)·‖ê − e‖² / ‖e − mean(e)‖² (batch sums), converted
  into the reconstruction loss's units (× reconstruction / its normalised MSE, detached), because α is relative
  to a normalised-MSE main loss (see `auxk_loss`).

Batch statistics (the batch means above, AuxK's variance) go through a `Sync`: in data-parallel training
they are taken over the global batch, and each rank's loss is scaled so that the mean of the ranks'
gradients is the gradient of the global batch's loss. With the default `LOCAL` nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.distributed import LOCAL, Sync
from clipsteer.sae.model import SparseAutoencoder, TrainTrace
from clipsteer.sae.nonlinearities import step
from clipsteer.sae.recipe import ObjectiveConfig
from clipsteer.sae.sparse import sparse_decode


@dataclass
class Losses:
    total: Tensor
    terms: dict[str, Tensor]  # detached scalar tensors, for logging


def paper_row_norm(x: Tensor, sync: Sync = LOCAL) -> Tensor:
    """The paper loss's per-row divisor ‖x_n − mean(x)‖ (clamped away from 0): [N, d_in] → [N]."""
    return (x - sync.row_mean(x)).norm(dim=-1).clamp_min(1e-8)


def reconstruction_loss(recon: Tensor, x: Tensor, kind: str, sync: Sync = LOCAL) -> Tensor:
    """Element-wise loss [N, d_in] (mean it for the scalar)."""
    sq = (recon - x).pow(2)
    if kind == "mse":
        return sq
    return sq / paper_row_norm(x, sync)[:, None]


class _WeightedSquaredError(torch.autograd.Function):
    """Σ_n w_n ‖ŷ_n − x_n‖² / numel, its gradient reaching ŷ only: one [N, d_in] tensor forward (ŷ − x) and one
    backward, instead of the five that squaring, dividing and averaging elementwise leave (each a fresh
    allocation; see clipsteer.sae.workspace for why those cost on CPU)."""

    @staticmethod
    def forward(ctx: Any, recon: Tensor, x: Tensor, row_weight: Tensor | None) -> Tensor:  # type: ignore[override]
        diff = recon - x
        per_row = torch.linalg.vector_norm(diff, dim=-1).square()  # [N]
        if row_weight is not None:
            per_row = per_row * row_weight
        ctx.save_for_backward(diff, row_weight)
        return per_row.sum() / diff.numel()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        diff, row_weight = ctx.saved_tensors
        factor = grad * (2.0 / diff.numel())
        return diff * (factor if row_weight is None else (row_weight * factor)[:, None]), None, None


def mean_reconstruction_loss(recon: Tensor, x: Tensor, kind: str, sync: Sync = LOCAL) -> Tensor:
    """The mean of `reconstruction_loss(recon, x, kind, sync)` (a scalar), with fewer [N, d_in] passes."""
    x = x.detach()
    row_weight = None if kind == "mse" else 1 / paper_row_norm(x, sync)
    return _WeightedSquaredError.apply(recon, x, row_weight)  # type: ignore[no-any-return]


def true_indices(mask: Tensor, count: int) -> Tensor:
    """The ascending indices [count] of `mask`'s True entries, `count` being their number, known to the caller:
    unlike `mask.nonzero()` or indexing with the mask, no wait for the device to learn the result's size."""
    return torch.argsort((~mask).to(torch.uint8), stable=True)[:count]


def ghost_grad_loss(sae: SparseAutoencoder, trace: TrainTrace, dead: Tensor, recon_elem: Tensor,
                    sync: Sync = LOCAL) -> Tensor:
    """dead: indices of the dead features [n_dead]."""
    residual = (trace.x_norm - trace.recon_norm).detach().float()  # [N, d_in], decoder space
    dead_pre = trace.pre.index_select(1, dead) if trace.pre is not None else sae.pre_activations(trace.x_norm, dead)
    ghost = torch.exp(dead_pre.float()) @ sae.W_dec.index_select(0, dead).float()  # [N, d_in]
    scale = residual.norm(dim=-1) / (1e-6 + 2 * ghost.norm(dim=-1))
    ghost = ghost * scale[:, None].detach()
    ghost_elem = (ghost - residual).pow(2) / paper_row_norm(residual, sync)[:, None]
    rescale = (recon_elem / (ghost_elem + 1e-6)).detach()
    return (rescale * ghost_elem).mean()


def auxk_loss(sae: SparseAutoencoder, trace: TrainTrace, n_dead: int, k_aux: int, main_loss: Tensor,
              sync: Sync = LOCAL) -> Tensor:
    """Gao et al.'s AuxK term, min(n_dead/k_aux, 1)·‖ê − e‖² / ‖e − ē‖², in the units of `main_loss`.

    Its weight α is set against a main loss in normalised-MSE units, ‖x̂ − x‖² / ‖x − x̄‖² (Gao et al.); the
    paper's reconstruction loss is far smaller (it divides by the token norm, and again by d_in in the mean), so
    α = 1/32 would make AuxK's gradient dominate the step's. The term is therefore multiplied by main_loss / its
    normalised MSE on this batch (detached). With the gradient rescaled to the clip's norm, an unconverted AuxK
    term scaled the main loss's share of the step down by orders of magnitude once it switched on."""
    residual = (trace.x_norm - trace.recon_norm).detach().float()
    if trace.aux_values is not None and trace.aux_indices is not None:
        aux_recon = sparse_decode(trace.aux_values, trace.aux_indices, sae.W_dec)
    else:
        assert trace.aux_codes is not None
        aux_recon = (trace.aux_codes @ sae.W_dec.to(trace.aux_codes.dtype)).float()
    err = (aux_recon - residual).pow(2).sum()
    total_var = sync.total((residual - sync.row_mean(residual)).pow(2).sum()).clamp_min(1e-8)
    x = trace.x_norm.detach().float()
    main_nmse = sync.total(residual.pow(2).sum()) / sync.total((x - sync.row_mean(x)).pow(2).sum()).clamp_min(1e-8)
    main_value = sync.total(main_loss.float()) / sync.world  # this rank's loss is its rows' mean: the global mean
    to_main_units = main_value / main_nmse.clamp_min(1e-12)
    # err sums this rank's rows only: × world makes the ranks' mean gradient that of the global ratio
    return min(n_dead / k_aux, 1.0) * err * sync.world / total_var * to_main_units


def auxk_size(objective: ObjectiveConfig, d_in: int, n_dead: int) -> int:
    """How many dead features AuxK uses this step (0 when disabled or none are dead)."""
    if objective.auxk_coefficient == 0 or n_dead == 0:
        return 0
    return min(objective.auxk_k or d_in // 2, n_dead)


def compute_losses(sae: SparseAutoencoder, trace: TrainTrace, objective: ObjectiveConfig,
                   sparsity_coefficient: float, dead_mask: Tensor | None, sync: Sync = LOCAL,
                   n_dead: int | None = None) -> Losses:
    """Total loss to minimise and its named terms, for one trace (see module docstring). `n_dead`, the
    number of True entries of `dead_mask`, spares a wait for the device when the caller already has it."""
    arch = sae.spec
    if n_dead is None:
        n_dead = int(dead_mask.sum()) if dead_mask is not None else 0
    ghost_grads = arch.dead_feature_loss == "ghost_grads" and objective.ghost_grads and n_dead > 0
    if ghost_grads:  # it rescales by the elementwise loss
        recon_elem = reconstruction_loss(trace.recon, trace.x, objective.reconstruction, sync)
        recon = recon_elem.mean()
    else:
        recon = mean_reconstruction_loss(trace.recon, trace.x, objective.reconstruction, sync)
    total = recon
    terms: dict[str, Tensor] = {"reconstruction": recon.detach()}
    if arch.penalty == "l1" and trace.l1 is not None:  # the fused ReLU path computed it with the codes
        l1 = trace.l1
        total = total + sparsity_coefficient * l1
        terms["l1"] = l1.detach()
    elif arch.penalty == "l1":
        assert trace.codes is not None
        # codes ≥ 0, so Σ|f| = Σf; summed in the codes' dtype (a bf16 sum still accumulates in fp32)
        # because asking for an fp32 result would copy the whole [N, d_sae] code matrix twice.
        l1 = trace.codes.sum(dim=-1).float().mean()
        total = total + sparsity_coefficient * l1
        terms["l1"] = l1.detach()
    elif arch.penalty == "l0":
        assert trace.pre is not None
        l0 = step(trace.pre.float(), sae.threshold.float(), objective.jumprelu_bandwidth).sum(dim=-1).mean()
        total = total + sparsity_coefficient * l0
        terms["l0_penalty"] = l0.detach()
    if ghost_grads:
        assert dead_mask is not None
        ghost = ghost_grad_loss(sae, trace, true_indices(dead_mask, n_dead), recon_elem.detach(), sync)
        total = total + ghost
        terms["ghost_grad"] = ghost.detach()
    if arch.dead_feature_loss == "auxk":
        k_aux = auxk_size(objective, sae.d_in, n_dead)
        if k_aux > 0:
            aux = auxk_loss(sae, trace, n_dead, k_aux, recon, sync)
            total = total + objective.auxk_coefficient * aux
            terms["auxk"] = aux.detach()
    terms["loss"] = total.detach()
    return Losses(total=total, terms=terms)
