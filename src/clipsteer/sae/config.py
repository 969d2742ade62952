"""`SAEConfig`: everything needed to rebuild an SAE's forward function, plus where it was trained.

Training-only knobs (sparsity coefficient, ghost grads, AuxK, JumpReLU bandwidth, ...) live in
`clipsteer.sae.objectives.ObjectiveConfig`; schedules and checkpoints in `clipsteer.sae.trainer.TrainerConfig`.

Architectures (`architecture`):
- `relu`      f = ReLU(pre)                              trained with an L1 penalty (the paper's "vanilla" SAE)
- `topk`      keep the k largest pre-activations per token, then ReLU (Prisma / SAELens / OpenAI)
- `batchtopk` training: keep the k·B largest ReLU'd pre-activations of a batch of B tokens; inference:
              f = ReLU(pre)·[pre > θ] with one threshold θ estimated during training
- `jumprelu`  f = pre·[pre > θ_j], one learned threshold per feature (straight-through estimator, L0 penalty)
where pre = (x̃ − b_dec)·W_enc + b_enc and x̃ is the normalised input (see `clipsteer.sae.normalization`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from clipsteer.errors import InputFormatError
from clipsteer.models.sites import TOKEN_SELECTIONS, TokenSelection

Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]
Normalization = Literal["none", "layer_norm", "constant_scale", "token_rescale"]

ARCHITECTURES: tuple[str, ...] = get_args(Architecture)
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


class SAEConfigError(InputFormatError):
    """A config (ours or a foreign one) that is missing fields or has invalid values."""


@dataclass(frozen=True)
class SAEConfig:
    d_in: int
    """Width of the activations the SAE reads (the backbone's d_model at `site`)."""
    d_sae: int
    """Number of dictionary features."""
    architecture: Architecture = "relu"
    k: int | None = None
    """Active features per token: exact for `topk`, on average over a batch for `batchtopk`."""
    normalization: Normalization = "layer_norm"
    """How inputs are normalised before encoding and de-normalised after decoding (Prisma default:
    `layer_norm`). `constant_scale` is folded into the weights when the SAE is saved."""
    site: str | None = None
    """Hook site the SAE was trained on, e.g. `blocks.8.resid_post` (None: unknown)."""
    tokens: TokenSelection | None = None
    """Which tokens it was trained on: all, the CLS token only, or patches only (None: unknown)."""
    model: str | None = None
    """The backbone it was trained on, if known."""
    input_scale_folded: float | None = None
    """Provenance: the constant input scale that was folded into the weights at save time."""
    source_format: str = "clipsteer"
    """Provenance: `clipsteer`, `prisma` or `saelens`."""

    def __post_init__(self) -> None:
        def bad(field: str, expected: str) -> SAEConfigError:
            return SAEConfigError(f"SAEConfig.{field}={getattr(self, field)!r}: expected {expected}")

        for field in ("d_in", "d_sae"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise bad(field, "a positive integer")
        if self.architecture not in ARCHITECTURES:
            raise bad("architecture", f"one of {list(ARCHITECTURES)}")
        if self.normalization not in NORMALIZATIONS:
            raise bad("normalization", f"one of {list(NORMALIZATIONS)}")
        if self.tokens is not None and self.tokens not in TOKEN_SELECTIONS:
            raise bad("tokens", f"one of {list(TOKEN_SELECTIONS)} or None")
        if self.uses_k:
            if not isinstance(self.k, int) or not 1 <= self.k <= self.d_sae:
                raise bad("k", f"an integer in 1..d_sae={self.d_sae} for architecture {self.architecture!r}")
        elif self.k is not None:
            raise bad("k", f"None for architecture {self.architecture!r} (k is only used by topk/batchtopk)")

    @property
    def uses_k(self) -> bool:
        """k sets the sparsity (topk, batchtopk); see `clipsteer.sae.architectures`."""
        from clipsteer.sae.architectures import spec

        return spec(self.architecture).uses_k

    @property
    def expansion_factor(self) -> float:
        return self.d_sae / self.d_in

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | Path = "SAE config") -> SAEConfig:
        """Build from plain data; missing or unknown fields raise `SAEConfigError` naming `where`."""
        if not isinstance(data, dict):
            raise SAEConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise SAEConfigError(f"{where}: unknown field(s) {unknown}; expected some of {sorted(fields)}")
        required = [name for name, f in fields.items()
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise SAEConfigError(f"{where}: missing required field(s) {missing}")
        try:
            return cls(**data)
        except SAEConfigError as error:
            raise SAEConfigError(f"{where}: {error}") from None
