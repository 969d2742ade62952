"""One optimisation step of one SAE: forward, loss, backward, decoder-norm handling, clip, Adam.

Order within a step (the paper's, plus a final re-normalisation so the invariant holds between steps):
  forward/loss (bf16 autocast optional) → backward → remove the gradient component parallel to each
  decoder row → clip the global gradient norm → Adam → rescale decoder rows to unit norm →
  (BatchTopK) update the inference-threshold EMA → update firing statistics.

Data-parallel training injects a `Sync` (`clipsteer.sae.distributed`): it averages the gradients over
ranks right after `backward` (so the decoder-norm projection, the clip and Adam see the global batch's
gradient on every rank), takes the objective's batch statistics over the global batch, sums the firing
statistics and averages the logged metrics. The default `LOCAL` sync does nothing.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from clipsteer.sae.distributed import LOCAL, Sync
from clipsteer.sae.model import SparseAutoencoder, TrainTrace
from clipsteer.sae.objectives import auxk_size, compute_losses
from clipsteer.sae.recipe import SAERecipe, TrainerConfig
from clipsteer.sae.schedules import linear_warmup
from clipsteer.sae.stats import FeatureStats
from clipsteer.sae.workspace import W_ENC_GRAD, Workspace


def make_adam(sae: SparseAutoencoder, config: TrainerConfig) -> torch.optim.Adam:
    """Adam with default eps; the fused kernel where the device supports it (it is deterministic). With
    `bias_lr_factor` ≠ 1, b_enc and b_dec form a second parameter group whose lr is that factor times the step's."""
    params = list(sae.parameters())
    groups: list[dict[str, Any]] = [{"params": params, "lr_factor": 1.0}]
    if config.bias_lr_factor != 1.0:
        biases = {id(sae.b_enc), id(sae.b_dec)}
        groups = [{"params": [p for p in params if id(p) not in biases], "lr_factor": 1.0},
                  {"params": [sae.b_enc, sae.b_dec], "lr_factor": config.bias_lr_factor}]
    try:
        return torch.optim.Adam(groups, lr=config.lr, betas=config.adam_betas, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(groups, lr=config.lr, betas=config.adam_betas)


@torch.no_grad()
def explained_variance(recon: Tensor, x: Tensor, sync: Sync = LOCAL) -> float:
    """The paper's EV: mean over tokens of 1 − ‖x̂ − x‖² / ‖x − mean_batch(x)‖²; this rank's tokens, with
    the global batch's mean (the ranks' values average to the global EV)."""
    resid = (recon.float() - x.float()).pow(2).sum(dim=-1)
    total = (x.float() - sync.row_mean(x.float())).pow(2).sum(dim=-1).clamp_min(1e-12)
    return float((1 - resid / total).mean())


# Metrics that describe this rank's rows; averaged over ranks before logging (the rest are equal everywhere).
_PER_BATCH = ("loss", "reconstruction", "l1", "l0_penalty", "ghost_grad", "auxk", "l0", "explained_variance")


class SAEUpdater:
    """Owns one SAE's optimizer and firing statistics; `step` applies one update."""

    def __init__(self, recipe: SAERecipe, sae: SparseAutoencoder, config: TrainerConfig, sync: Sync = LOCAL) -> None:
        assert sae.config == recipe.sae, "the SAE must be built from the recipe's config"
        if sync.world > 1 and sae.spec.threshold == "batch":
            raise ValueError(f"SAE {recipe.name!r}: data-parallel training of batchtopk SAEs is not supported (its "
                             "top-k runs over the whole batch, which would need the ranks' activations); use "
                             "--dist.mode recipes, or topk")
        self.recipe = recipe
        self.sync = sync
        self.sae = sae
        self.config = config
        self.optimizer = make_adam(sae, config)
        self.stats = FeatureStats(sae.d_sae, device=sae.W_enc.device)
        self.pending_window_summary: dict[str, float] = {}
        self.workspace = Workspace()  # [N, d_sae] buffers reused every step (see clipsteer.sae.workspace)

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def max_grad_norm(self) -> float | None:
        """The gradient-norm clip this SAE trains with (None: none)."""
        clip = self.config.max_grad_norm
        return self.sae.spec.max_grad_norm if clip == "per_architecture" else clip

    @property
    def gradient_rescale(self) -> float:
        """p: a gradient of norm n below the clip c reaches Adam at norm c^p·n^(1−p) (0: clipped only)."""
        return 0.0 if self.max_grad_norm is None else float(self.config.gradient_rescale)

    def step(self, x: Tensor, step: int, lr: float, want_metrics: bool = False) -> dict[str, float] | None:
        """x: [N, d_in] (fp32). Returns logging metrics when `want_metrics`."""
        sae, objective, config = self.sae, self.recipe.objective, self.config
        sae.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_factor"]
        coefficient = linear_warmup(step, target=objective.sparsity_coefficient, warmup=objective.sparsity_warmup_steps)
        dead_mask = self.stats.dead_mask(config.dead_feature_window)
        n_dead = int(dead_mask.sum())
        k_aux = auxk_size(objective, sae.d_in, n_dead) if sae.spec.dead_feature_loss == "auxk" else 0
        device_type = x.device.type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=config.autocast_bf16):
            trace = sae.trace(x, dead_mask=dead_mask if n_dead else None, k_aux=k_aux,
                              jumprelu_bandwidth=objective.jumprelu_bandwidth, workspace=self.workspace)
            losses = compute_losses(sae, trace, objective, coefficient, dead_mask if n_dead else None, self.sync,
                                    n_dead=n_dead)
        if sae.uses_sparse_topk:  # last step's W_enc gradient buffer: the sparse encoder writes this step's into it
            self.workspace.give(W_ENC_GRAD, sae.W_enc.grad)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        self._average_gradients()
        sae.remove_parallel_decoder_grad_()
        clip, norm = self.max_grad_norm, None
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(sae.parameters(), clip)
        # The step's one wait for the device after the forward: the loss and the gradient norm are read
        # together, after the backward was queued, so that the host does not stall mid-step (on a GPU each
        # such wait leaves the device idle while the host queues what follows). A non-finite loss still stops
        # the step before the optimizer touches the parameters.
        loss_value, grad_norm = torch.stack([losses.total.detach().float(),
                                             losses.total.new_full((), math.nan) if norm is None else norm.float()]
                                            ).tolist()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"SAE {self.name!r}: non-finite loss {loss_value} at step {step} "
                                     f"(terms {({k: float(v) for k, v in losses.terms.items()})}); try a lower lr "
                                     "or disable autocast")
        power = self.gradient_rescale
        if clip is not None and power > 0 and 0 < grad_norm < clip:
            factor = (clip / grad_norm) ** power  # clipping only scales down; this scales small gradients up
            for p in sae.parameters():
                if p.grad is not None:
                    p.grad.mul_(factor)
        self.optimizer.step()
        sae.set_decoder_unit_norm_()
        self._update_batch_threshold(trace)
        self.stats.update(trace.fired, trace.fire_counts, trace.counted_tokens, self.sync)
        if (step + 1) % config.feature_sampling_window == 0:
            self.pending_window_summary = self.stats.summarize_window(config.dense_threshold)
        if not want_metrics:
            return None
        metrics = {key: float(value) for key, value in losses.terms.items()}
        metrics.update(l0=trace.l0, explained_variance=explained_variance(trace.recon, trace.x, self.sync))
        self._average_metrics(metrics)
        metrics.update(lr=lr, sparsity_coefficient=coefficient, frac_dead=n_dead / sae.d_sae, grad_norm=grad_norm)
        if sae.spec.threshold == "batch":
            metrics["batch_threshold"] = float(sae.batch_threshold)
        metrics.update(self.pending_window_summary)
        self.pending_window_summary = {}
        return metrics

    @torch.no_grad()
    def _average_gradients(self) -> None:
        if self.sync.world == 1:
            return
        params = list(self.sae.parameters())
        for p in params:  # a parameter without a gradient on this step still takes part in the reduction
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.sync([p.grad for p in params], "mean")  # type: ignore[misc]

    def _average_metrics(self, metrics: dict[str, float]) -> None:
        if self.sync.world == 1:
            return
        keys = [k for k in _PER_BATCH if k in metrics]
        values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=self.sae.W_enc.device)
        self.sync([values], "mean")
        metrics.update(zip(keys, values.tolist(), strict=True))

    @torch.no_grad()
    def _update_batch_threshold(self, trace: TrainTrace) -> None:
        if self.sae.spec.threshold != "batch" or trace.batch_threshold is None:
            return
        current, momentum = self.sae.batch_threshold, self.recipe.objective.batchtopk_threshold_momentum
        value = trace.batch_threshold.to(current.dtype)
        # on the device (no host read): a NaN batch value keeps the EMA; the first value starts it
        blended = torch.where(torch.isnan(current), value, current * momentum + value * (1 - momentum))
        current.copy_(torch.where(torch.isnan(value), current, blended))
