"""The sparse autoencoder: `encode`, `decode`, `forward` for every architecture in `SAEConfig`.

    x̃   = normalize(x)                                   (see clipsteer.sae.normalization)
    pre = (x̃ − b_dec)·W_enc + b_enc                      W_enc [d_in, d_sae], b_enc [d_sae], b_dec [d_in]
    f   = act(pre)                                        relu | topk | batchtopk | jumprelu
    x̂   = denormalize(f·W_dec + b_dec)                    W_dec [d_sae, d_in], rows kept at unit norm in training

The pre-activation is computed as x̃·W_enc + (b_enc − b_dec·W_enc): the same number, but the gradient of
b_dec then costs a vector–matrix product instead of a full [N, d_sae]×[d_sae, d_in] matmul.

Initialisation (the paper's `encoder_transpose_decoder`): W_dec Kaiming-uniform with rows normalised to
unit L2 norm, W_enc = W_decᵀ, b_enc = 0, b_dec = 0 until the trainer sets it to the geometric median of
a sample. JumpReLU thresholds start at 0.001 (trainers may override); BatchTopK's inference threshold is
NaN until estimated in training.

Leading dimensions: `encode`, `decode` and `forward` accept [..., d_in] (e.g. [B, T, d] for steering).
Per-token normalisations (layer_norm, token_rescale) need the input x to undo the normalisation, so
`decode(f, x=...)` takes the activations the codes came from; SAEs with `none`/`constant_scale` don't.
BatchTopK, like dropout, behaves differently in `train()` mode (batch-level selection) and `eval()` mode
(the estimated threshold). Loaders return SAEs in eval mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor, nn

from clipsteer.sae.architectures import ArchSpec, spec
from clipsteer.sae.config import SAEConfig
from clipsteer.sae.fused_relu import relu_autoencode
from clipsteer.sae.normalization import NormStats, denormalize, normalize
from clipsteer.sae.sparse import sparse_decode, topk_encode
from clipsteer.sae.workspace import Workspace, plain_fp32

TopKImpl = Literal["sparse", "dense"]
PER_TOKEN_NORMALIZATIONS = ("layer_norm", "token_rescale")
DEFAULT_JUMPRELU_THRESHOLD = 1e-3
FREQUENCY_SAMPLE_TOKENS = 1024  # dense architectures count firing frequencies on this many tokens per batch
PROJECTION_ROWS = 1024  # decoder rows per block when removing the gradient's parallel component


class SAEInputError(ValueError):
    """An input tensor whose shape or contents do not fit the SAE."""


class SAEOutput:
    """Result of `SparseAutoencoder.forward`.

    reconstruction: [..., d_in]; values / indices: [..., k] for TopK SAEs (None otherwise);
    codes: [..., d_sae] — for TopK SAEs the dense code is only built when this attribute is read.
    """

    def __init__(self, reconstruction: Tensor, d_sae: int, codes: Tensor | None = None,
                 values: Tensor | None = None, indices: Tensor | None = None) -> None:
        assert codes is not None or (values is not None and indices is not None)
        self.reconstruction = reconstruction
        self.values = values
        self.indices = indices
        self._codes = codes
        self._d_sae = d_sae

    @property
    def codes(self) -> Tensor:
        if self._codes is None:
            assert self.values is not None and self.indices is not None
            self._codes = densify(self.values, self.indices, self._d_sae)
        return self._codes


def densify(values: Tensor, indices: Tensor, d_sae: int) -> Tensor:
    """Sparse codes values/indices [..., k] → dense [..., d_sae]."""
    dense = values.new_zeros(*values.shape[:-1], d_sae)
    return dense.scatter(-1, indices, values)


@dataclass
class TrainTrace:
    """Everything a training objective needs from one forward pass on a flat batch [N, d_in].

    Dense architectures fill `pre` and `codes` ([N, d_sae]); the sparse TopK path fills `values` /
    `indices` ([N, k]) and, when AuxK is active, `aux_values` / `aux_indices` ([N, k_aux]). The dense TopK
    reference and BatchTopK put their AuxK codes in `aux_codes` ([N, d_sae]). The fused ReLU path
    (`clipsteer.sae.fused_relu`) fills `codes` and `l1` but not `pre` (ghost grads recompute the dead
    features' pre-activations, see `SparseAutoencoder.pre_activations`).
    """

    x: Tensor
    x_norm: Tensor
    stats: NormStats
    recon_norm: Tensor
    recon: Tensor
    fired: Tensor         # bool [d_sae]: non-zero on at least one token of the batch
    fire_counts: Tensor   # float [d_sae]: tokens among the first `counted_tokens` on which each feature fired
    counted_tokens: int
    pre: Tensor | None = None
    codes: Tensor | None = None
    values: Tensor | None = None
    indices: Tensor | None = None
    aux_values: Tensor | None = None
    aux_indices: Tensor | None = None
    aux_codes: Tensor | None = None
    batch_threshold: Tensor | None = None  # BatchTopK: smallest kept activation in this batch
    l1: Tensor | None = None  # fused ReLU path: mean_n Σ_j f_nj, differentiable

    @property
    def l0(self) -> float:
        """Mean number of non-zero features per token (exact, over the whole batch)."""
        with torch.no_grad():
            if self.values is not None:
                return float((self.values > 0).sum()) / self.values.shape[0]
            assert self.codes is not None
            return float(self.codes.gt(0).sum(dim=-1, dtype=torch.float32).mean())


class SparseAutoencoder(nn.Module):
    W_enc: nn.Parameter  # [d_in, d_sae]
    b_enc: nn.Parameter  # [d_sae]
    W_dec: nn.Parameter  # [d_sae, d_in]
    b_dec: nn.Parameter  # [d_in]

    def __init__(self, config: SAEConfig, *, generator: torch.Generator | None = None,
                 device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
                 topk_impl: TopKImpl = "sparse") -> None:
        super().__init__()
        self.config = config
        self.topk_impl: TopKImpl = topk_impl
        d_in, d_sae = config.d_in, config.d_sae
        W_dec = torch.empty(d_sae, d_in, dtype=torch.float32)
        nn.init.kaiming_uniform_(W_dec, a=math.sqrt(5), generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(W_dec.to(device=device, dtype=dtype))
        self.W_enc = nn.Parameter(W_dec.t().contiguous().to(device=device, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, device=device, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device, dtype=dtype))
        self.spec: ArchSpec = spec(config.architecture)
        if self.spec.threshold == "per_feature":
            self.log_threshold = nn.Parameter(torch.full((d_sae,), math.log(DEFAULT_JUMPRELU_THRESHOLD),
                                                         device=device, dtype=dtype))
        elif self.spec.threshold == "batch":
            self.register_buffer("batch_threshold", torch.tensor(float("nan"), device=device, dtype=dtype))
        if config.normalization == "constant_scale":
            self.register_buffer("input_scale", torch.tensor(1.0, device=device, dtype=dtype))

    # ----- shapes and small helpers -------------------------------------------------------------
    @property
    def d_in(self) -> int:
        return self.config.d_in

    @property
    def d_sae(self) -> int:
        return self.config.d_sae

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @property
    def threshold(self) -> Tensor:
        """Per-feature thresholds θ = exp(log θ) [d_sae] (JumpReLU), or the one inference threshold [] (BatchTopK)."""
        if self.spec.threshold == "per_feature":
            return self.log_threshold.exp()
        if self.spec.threshold == "batch":
            return self.batch_threshold
        raise AttributeError(f"a {self.architecture} SAE has no threshold")

    @property
    def uses_sparse_topk(self) -> bool:
        """Exact per-token TopK computed by the sparse kernels (values/indices, never a dense [N, d_sae])."""
        return self.spec.exact_k_per_token and self.topk_impl == "sparse"

    def extra_repr(self) -> str:
        c = self.config
        return (f"d_in={c.d_in}, d_sae={c.d_sae}, architecture={c.architecture}, k={c.k}, "
                f"normalization={c.normalization}, site={c.site}")

    def _flatten(self, x: Tensor, what: str = "input") -> tuple[Tensor, tuple[int, ...]]:
        if not isinstance(x, Tensor):
            raise SAEInputError(f"SAE {what}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.d_in:
            raise SAEInputError(f"SAE {what}: expected shape [..., d_in={self.d_in}], got {tuple(x.shape)}"
                                + (f" (this SAE was trained on {self.config.site})" if self.config.site else ""))
        lead = tuple(x.shape[:-1])
        return x.reshape(-1, self.d_in).to(self.W_enc.dtype), lead

    def normalize_input(self, x: Tensor) -> tuple[Tensor, NormStats]:
        """x [N, d_in] → (x̃ [N, d_in], the statistics that undo it)."""
        scale = self.input_scale if self.config.normalization == "constant_scale" else None
        return normalize(x, self.config.normalization, scale)

    def _stats_for_decode(self, n: int, x: Tensor | None) -> NormStats:
        if self.config.normalization in PER_TOKEN_NORMALIZATIONS:
            if x is None:
                raise SAEInputError(
                    f"this SAE normalises each token ({self.config.normalization}); pass the activations the "
                    f"codes were computed from: decode(codes, x=activations) with x of shape [..., {self.d_in}]")
            x2, _ = self._flatten(x, "x passed to decode")
            if x2.shape[0] != n:
                raise SAEInputError(f"decode: x has {x2.shape[0]} tokens but the codes have {n}")
            return self.normalize_input(x2)[1]
        if self.config.normalization == "constant_scale":
            return NormStats(scale=1.0 / self.input_scale)
        return NormStats()

    def effective_encoder_bias(self) -> Tensor:
        """b_enc − b_dec·W_enc [d_sae], so that pre = x̃·W_enc + this."""
        return self.b_enc - self.b_dec @ self.W_enc

    def pre_activations(self, x_norm: Tensor, features: Tensor | None = None) -> Tensor:
        """x̃ [N, d_in] → pre [N, d_sae], or only the columns `features` (int64 indices [n]) → [N, n]."""
        if features is None:
            return torch.addmm(self.effective_encoder_bias(), x_norm, self.W_enc)
        W = self.W_enc.index_select(1, features)
        return torch.addmm(self.b_enc.index_select(0, features) - self.b_dec @ W, x_norm, W)

    # ----- public API ------------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """x [..., d_in] → codes f [..., d_sae] (non-negative)."""
        x2, lead = self._flatten(x)
        x_norm, _ = self.normalize_input(x2)
        if self.uses_sparse_topk:
            assert self.config.k is not None
            values, indices, _, _ = topk_encode(x_norm, self.W_enc, self.b_enc, self.config.k, b_dec=self.b_dec)
            codes = densify(values, indices, self.d_sae)
        else:
            codes, _ = self.spec.activate(self.pre_activations(x_norm), self, None)
        return codes.reshape(*lead, self.d_sae)

    def encode_sparse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Exact per-token k only (TopK): x [..., d_in] → (values [..., k], indices [..., k]); values ≥ 0, indices
        distinct per token."""
        if not self.spec.exact_k_per_token:
            raise ValueError(f"encode_sparse needs an SAE with exactly k features per token (topk); this one is "
                             f"{self.architecture} (use encode)")
        assert self.config.k is not None
        x2, lead = self._flatten(x)
        x_norm, _ = self.normalize_input(x2)
        values, indices, _, _ = topk_encode(x_norm, self.W_enc, self.b_enc, self.config.k, b_dec=self.b_dec)
        return values.reshape(*lead, -1), indices.reshape(*lead, -1)

    def decode(self, codes: Tensor, x: Tensor | None = None) -> Tensor:
        """codes [..., d_sae] → x̂ [..., d_in]. `x` (the encoded activations) is needed for per-token
        normalisations, to undo them."""
        if codes.ndim == 0 or codes.shape[-1] != self.d_sae:
            raise SAEInputError(f"decode: expected codes of shape [..., d_sae={self.d_sae}], got {tuple(codes.shape)}")
        lead = codes.shape[:-1]
        f = codes.reshape(-1, self.d_sae).to(self.W_dec.dtype)
        stats = self._stats_for_decode(f.shape[0], x)
        recon = denormalize(torch.addmm(self.b_dec, f, self.W_dec), stats)
        return recon.reshape(*lead, self.d_in)

    def forward(self, x: Tensor) -> SAEOutput:
        """x [..., d_in] → SAEOutput(reconstruction [..., d_in], codes, and values/indices for TopK)."""
        x2, lead = self._flatten(x)
        trace = self.trace(x2)
        recon = trace.recon.reshape(*lead, self.d_in)
        if trace.values is not None and trace.indices is not None:
            return SAEOutput(recon, self.d_sae, values=trace.values.reshape(*lead, -1),
                             indices=trace.indices.reshape(*lead, -1))
        assert trace.codes is not None
        if self.spec.exact_k_per_token:  # dense reference path: still expose the sparse form
            top = trace.codes.topk(self.config.k, dim=-1, sorted=False)  # type: ignore[arg-type]
            return SAEOutput(recon, self.d_sae, codes=trace.codes.reshape(*lead, self.d_sae),
                             values=top.values.reshape(*lead, -1), indices=top.indices.reshape(*lead, -1))
        return SAEOutput(recon, self.d_sae, codes=trace.codes.reshape(*lead, self.d_sae))

    # ----- training ------------------------------------------------------------------------------------
    def trace(self, x: Tensor, *, dead_mask: Tensor | None = None, k_aux: int = 0,
              jumprelu_bandwidth: float | None = None, workspace: Workspace | None = None) -> TrainTrace:
        """One forward pass on a flat batch x [N, d_in], keeping what the objectives need.

        dead_mask (bool [d_sae]) with k_aux > 0 adds the AuxK selection (TopK/BatchTopK). A
        `jumprelu_bandwidth` switches JumpReLU to its straight-through training form. A `workspace`
        lets the ReLU and sparse TopK paths reuse their [N, d_sae] buffers across calls (ReLU's codes live there).
        """
        if x.ndim != 2:
            raise SAEInputError(f"trace: expected a flat batch [N, d_in={self.d_in}], got {tuple(x.shape)}")
        x, _ = self._flatten(x)
        x_norm, stats = self.normalize_input(x)
        if self.uses_sparse_topk:
            assert self.config.k is not None
            values, indices, aux_values, aux_indices = topk_encode(
                x_norm, self.W_enc, self.b_enc, self.config.k, dead_mask, k_aux, workspace, b_dec=self.b_dec)
            recon_norm = sparse_decode(values, indices, self.W_dec).add_(self.b_dec)  # in place: one [N, d_in] result
            with torch.no_grad():  # a scatter-add, not bincount of a masked selection: no wait for the device
                fire_counts = values.new_zeros(self.d_sae).index_add_(0, indices.reshape(-1),
                                                                      (values > 0).reshape(-1).to(values.dtype))
            return TrainTrace(x=x, x_norm=x_norm, stats=stats, recon_norm=recon_norm,
                              recon=denormalize(recon_norm, stats), fired=fire_counts > 0,
                              fire_counts=fire_counts, counted_tokens=x.shape[0], values=values,
                              indices=indices, aux_values=aux_values if k_aux else None,
                              aux_indices=aux_indices if k_aux else None)
        if self.spec.fused_training and plain_fp32(x_norm, self.W_enc):
            recon_norm, l1, codes, column_sums = relu_autoencode(
                x_norm, self.W_enc, self.effective_encoder_bias(), self.W_dec, self.b_dec, workspace)
            with torch.no_grad():
                sample = codes[:FREQUENCY_SAMPLE_TOKENS]
                fire_counts = sample.sign().sum(dim=0)  # codes ≥ 0: sign is the firing indicator (2× gt+sum)
            return TrainTrace(x=x, x_norm=x_norm, stats=stats, recon_norm=recon_norm,
                              recon=denormalize(recon_norm, stats), fired=column_sums > 0, fire_counts=fire_counts,
                              counted_tokens=sample.shape[0], codes=codes, l1=l1)
        pre = self.pre_activations(x_norm)
        codes, batch_threshold = self.spec.activate(pre, self, jumprelu_bandwidth)
        recon_norm = torch.addmm(self.b_dec.to(codes.dtype), codes, self.W_dec.to(codes.dtype)).float()
        aux_codes = None
        if k_aux > 0:
            assert dead_mask is not None and self.spec.dead_feature_loss == "auxk"
            aux = pre.masked_fill(~dead_mask, float("-inf")).topk(k_aux, dim=-1, sorted=False)
            aux_codes = torch.zeros_like(pre).scatter(-1, aux.indices, aux.values)
        with torch.no_grad():
            # "fired at all" over the whole batch is one cheap max-reduction; exact per-feature counts
            # over a [N, d_sae] mask cost ~8x more, so frequencies are counted on a fixed sample of tokens
            # (the batch is shuffled, so this is an unbiased estimate).
            fired = codes.amax(dim=0) > 0
            sample = codes[:FREQUENCY_SAMPLE_TOKENS]
            fire_counts = sample.gt(0).sum(dim=0, dtype=torch.float32)
        return TrainTrace(x=x, x_norm=x_norm, stats=stats, recon_norm=recon_norm,
                          recon=denormalize(recon_norm, stats), fired=fired, fire_counts=fire_counts,
                          counted_tokens=sample.shape[0], pre=pre, codes=codes,
                          aux_codes=aux_codes, batch_threshold=batch_threshold)

    @torch.no_grad()
    def set_decoder_unit_norm_(self) -> None:
        """Rescale every decoder row to unit L2 norm (the paper's `set_decoder_norm_to_unit_norm`)."""
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Project each decoder row's gradient onto the tangent space of the unit sphere at that row."""
        grad = self.W_dec.grad
        if grad is None:
            return
        # On CPU in row blocks: the products stay small (a [d_sae, d_in] temporary would be a fresh, page-faulting
        # allocation). On a GPU in one block: there each block is two kernel launches of host time.
        rows = PROJECTION_ROWS if grad.device.type == "cpu" else grad.shape[0]
        for g, w in zip(grad.split(rows), self.W_dec.split(rows), strict=True):
            parallel = (g * w).sum(dim=1, keepdim=True)  # [rows, 1]
            g.addcmul_(parallel, w, value=-1)

    @torch.no_grad()
    def folded(self) -> SparseAutoencoder:
        """A copy computing the same function with `constant_scale` folded into the weights.

        With c the input scale: b_enc, b_dec and thresholds are divided by c, W_enc and W_dec stay, so
        decoder rows keep unit norm and codes come out in raw-activation units (f_new = f_old / c).
        Other normalisations are returned as an unchanged copy.
        """
        config = self.config
        clone = SparseAutoencoder(config, device=self.W_enc.device, dtype=self.W_enc.dtype, topk_impl=self.topk_impl)
        clone.load_state_dict(self.state_dict())
        if config.normalization != "constant_scale":
            return clone.train(self.training)
        c = float(self.input_scale)
        new = SparseAutoencoder(replace(config, normalization="none", input_scale_folded=c),
                                device=self.W_enc.device, dtype=self.W_enc.dtype, topk_impl=self.topk_impl)
        state = {k: v for k, v in self.state_dict().items() if k != "input_scale"}
        state["b_enc"] = state["b_enc"] / c
        state["b_dec"] = state["b_dec"] / c
        if "log_threshold" in state:
            state["log_threshold"] = state["log_threshold"] - math.log(c)
        if "batch_threshold" in state:
            state["batch_threshold"] = state["batch_threshold"] / c
        new.load_state_dict(state)
        return new.train(self.training)
