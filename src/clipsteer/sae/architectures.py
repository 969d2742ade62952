"""Per-architecture behaviour in one table, so the rest of the package asks the table instead of comparing
architecture names. A new variant adds its name to `Architecture` (sae/config.py), one `ArchSpec` here
(its activation function and facts), and its tests; the model, trainer, objectives, file formats and
exporters read everything else from the spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from clipsteer.sae.config import ARCHITECTURES, Architecture
from clipsteer.sae.nonlinearities import batch_topk, jumprelu

if TYPE_CHECKING:
    from clipsteer.sae.model import SparseAutoencoder

Activate = Callable[[Tensor, "SparseAutoencoder", "float | None"], "tuple[Tensor, Tensor | None]"]
"""(pre [N, d_sae], the SAE, JumpReLU's straight-through bandwidth or None) → (codes [N, d_sae] ≥ 0, the
batch's threshold estimate [] for batch-level selection or None)."""


@dataclass(frozen=True)
class EncoderScale:
    """The encoder's initial scale c under `encoder_init="fitted_scale"` (x̂̃ − b_dec scales by c): with
    t = x̃ − b_dec and p the reconstruction of W_enc = W_decᵀ on the init sample, `least_squares` fits
    c = argmin ‖t − c·p‖², `norm` makes ‖c·p‖ = ‖t‖; SAEs wider than `wide_from` get c × √(E / wide_from)
    (E = d_sae / d_in); the result is capped at `high`.

    For TopK the selection does not depend on c, and p is poorly aligned with t at init (cos ≈ 0.5–0.8), so
    least squares shrinks the reconstruction well below the input's size; Adam's first steps then push the
    selected features up and never-selected ones (no gradient under TopK) stay unused. A larger c keeps more
    features alive and costs early EV. TopK matches norms, widened above ×16, at most the paper's W_enc = W_decᵀ
    (c ≤ 1). The norm fit shrinks as the SAE widens (the top k of more random projections are larger: 0.50,
    0.44, 0.38 at d=128 ×16, ×32, ×64) while the dead fraction grows, so the widening is a measured rule, not a
    derived one: against sparsify (same batches, k 32, 4M tokens at d=128, 1M at d=768; benchmarks/results/
    peers.md §5, §11–13, §17) it meets EV (≥ sparsify − 0.005) and dead fraction (≤ sparsify) at d=128 ×16
    (c 0.50), ×32 (c 0.62: 0.9833 / 0.220 dead vs 0.9833 / 0.290) and ×64 (c 0.77: 0.9816 / 0.260 vs
    0.9828 / 0.422), and at d=768 ×16 and ×64 the cap binds. ×16 is where the widening starts because the toy's
    suppression experiments train ×16 SAEs and did worse with a larger c there (a floor of 0.6: typographic OCA
    66.5 ± 16.8 vs 77.0 ± 3.5 over 3 seeds, §13). BatchTopK selects per batch, also independently of c, but was
    not measured and keeps least squares."""

    fit: Literal["least_squares", "norm"] = "least_squares"
    high: float = math.inf
    wide_from: float | None = None
    """SAEs wider than this expansion factor E get c × √(E / wide_from) before the cap (None: no widening)."""

    def __post_init__(self) -> None:
        assert self.high > 0, f"the encoder scale's cap must be positive, got {self}"
        assert self.wide_from is None or self.wide_from > 0, f"wide_from must be positive, got {self}"

    def widen(self, scale: float, expansion_factor: float) -> float:
        """The fitted c adjusted for the SAE's width and capped."""
        if self.wide_from is not None and expansion_factor > self.wide_from:
            scale *= math.sqrt(expansion_factor / self.wide_from)
        return min(scale, self.high)


@dataclass(frozen=True)
class ArchSpec:
    name: Architecture
    activate: Activate
    uses_k: bool
    """k sets the sparsity (exact per token, or on average per batch)."""
    exact_k_per_token: bool
    """Every token keeps exactly its k largest pre-activations: the sparse kernels (values/indices) apply."""
    penalty: Literal["l1", "l0"] | None
    """The sparsity term of the loss, weighted by the sparsity coefficient λ (None: k sets sparsity)."""
    dead_feature_loss: Literal["ghost_grads", "auxk"]
    """How dead features get a gradient."""
    threshold: Literal["per_feature", "batch"] | None
    """An inference threshold saved with the weights: one per feature (learned, stored as log θ) or one for
    all (a moving estimate of the batch's smallest kept activation, updated after each training step)."""
    saelens_architecture: str | None
    """SAELens' `architecture` for the same inference function (None: no equivalent)."""
    prisma_activation: str | None
    """ViT-Prisma's `activation_fn_str` for the same inference function (None: no equivalent)."""
    fused_training: bool = False
    """Training runs encoder, activation, L1 and decoder as one fused autograd node with reused buffers
    (`sae/fused_relu.py`, plain ReLU only); other variants take the generic path."""
    encoder_scale: EncoderScale = EncoderScale()
    """How `encoder_init="fitted_scale"` picks the encoder's initial scale (see `EncoderScale`)."""
    max_grad_norm: float = 1.0
    """The gradient-norm clip of clipsteer's default recipe (`TrainerConfig.max_grad_norm="per_architecture"`).
    ReLU: 0.02. Under the paper's loss its gradient norm over the first steps measured 0.06–0.27 (d=128 and d=768,
    benchmarks/grad_norm_probe.py), far below the paper's 1.0, and at d=768 ×16 the λ frontier ended 0.022 EV below dictionary_learning's after 1M tokens; with 0.02
    (binding at every step: Adam sees gradients of one size) it ended 0.002–0.007 above from L0 80 to 1489
    (benchmarks/results/peers.md §15–16). The others keep the paper's 1.0: TopK's gradient norm falls below 0.02
    within ~100 steps (at d=768 the 0.02 clip never binds), and on the toy, TopK SAEs trained with it did worse in
    the typographic defense (§16); `TrainerConfig.gradient_rescale` scales small gradients up towards this norm
    instead (opt-in). BatchTopK and JumpReLU were not measured."""

    @property
    def sweep_name(self) -> str:
        """The knob a sweep varies: `k` or the sparsity coefficient `lambda`."""
        return "k" if self.uses_k else "lambda"


def _relu(pre: Tensor, sae: SparseAutoencoder, bandwidth: float | None) -> tuple[Tensor, Tensor | None]:
    return pre.relu(), None


def _topk(pre: Tensor, sae: SparseAutoencoder, bandwidth: float | None) -> tuple[Tensor, Tensor | None]:
    """Dense reference of the per-token TopK (the fast path is `clipsteer.sae.sparse.topk_encode`)."""
    assert sae.config.k is not None
    top = pre.topk(sae.config.k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu()), None


def _jumprelu(pre: Tensor, sae: SparseAutoencoder, bandwidth: float | None) -> tuple[Tensor, Tensor | None]:
    threshold = sae.threshold.to(pre.dtype)
    if bandwidth is not None:  # training: straight-through gradient to θ
        return jumprelu(pre, threshold, bandwidth), None
    return pre.relu() * (pre > threshold).to(pre.dtype), None


def _batchtopk(pre: Tensor, sae: SparseAutoencoder, bandwidth: float | None) -> tuple[Tensor, Tensor | None]:
    """Like dropout, batch-level selection in train() mode and the estimated threshold in eval() mode."""
    assert sae.config.k is not None
    if sae.training:
        return batch_topk(pre, sae.config.k)
    if torch.isnan(sae.threshold):
        raise RuntimeError("this BatchTopK SAE has no inference threshold yet: train it (the trainer "
                           "estimates it), or set sae.batch_threshold, or call sae.train() for batch selection")
    return pre.relu() * (pre > sae.threshold).to(pre.dtype), None


ARCH_SPECS: dict[str, ArchSpec] = {spec.name: spec for spec in (
    ArchSpec("relu", _relu, uses_k=False, exact_k_per_token=False, penalty="l1", dead_feature_loss="ghost_grads",
             threshold=None, saelens_architecture="standard", prisma_activation="relu", fused_training=True,
             max_grad_norm=0.02),
    ArchSpec("topk", _topk, uses_k=True, exact_k_per_token=True, penalty=None, dead_feature_loss="auxk",
             threshold=None, saelens_architecture="topk", prisma_activation="topk",
             encoder_scale=EncoderScale("norm", high=1.0, wide_from=16)),
    ArchSpec("batchtopk", _batchtopk, uses_k=True, exact_k_per_token=False, penalty=None, dead_feature_loss="auxk",
             threshold="batch", saelens_architecture="jumprelu", prisma_activation=None),
    ArchSpec("jumprelu", _jumprelu, uses_k=False, exact_k_per_token=False, penalty="l0",
             dead_feature_loss="ghost_grads", threshold="per_feature", saelens_architecture="jumprelu",
             prisma_activation=None),
)}
assert set(ARCH_SPECS) == set(ARCHITECTURES), "every architecture needs a spec"
assert all(s.uses_k for s in ARCH_SPECS.values() if s.exact_k_per_token), "exact per-token k needs k"


def spec(architecture: str) -> ArchSpec:
    if architecture not in ARCH_SPECS:
        raise ValueError(f"unknown SAE architecture {architecture!r}; expected one of {sorted(ARCH_SPECS)}")
    return ARCH_SPECS[architecture]
