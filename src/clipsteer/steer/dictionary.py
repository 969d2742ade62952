"""Feature dictionaries as steering sees them: codes plus one direction per feature.

Every dictionary steered here has an affine decoder, possibly rescaled per token:
    decode(f)(x) = scale(x) · (f @ directions + bias) + shift(x)
(an SAE with per-token layer-norm input normalisation has scale = σ(x), shift = μ(x); others have
scale 1.) So changing codes f → f' changes the reconstruction by scale(x) · (f' − f) @ directions,
which is all the delta-form intervention `h' = h + dec(f') − dec(f)` needs — and, because a
single-feature edit is rank one, what makes the fast steering paths possible.

- `DirectionSet(W)`: arbitrary directions (rows of W); codes are projections x·Wᵀ. With W = I these
  are the base model's neurons (residual basis directions): clamping neuron j sets x[..., j] = α.
- `LayerNormedDirections(W)`: the same directions read and clamped in layer-normed units, as an SAE
  with `layer_norm` input normalisation reads its features: codes are x̃·Wᵀ with x̃ = (x − μ)/(σ + ε),
  and a code change t moves x by σ·t·w. With W = I: neurons in the SAE's units.
- `SAEDictionary(sae)`: an SAE's features (see clipsteer.steer.sae_adapter).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from clipsteer.sae.normalization import LAYER_NORM_EPS


@runtime_checkable
class LinearDictionary(Protocol):
    d_in: int
    n_features: int

    def codes(self, x: Tensor) -> Tensor:
        """[..., d_in] → feature activations [..., n_features]."""
        ...

    def directions(self) -> Tensor:
        """[n_features, d_in]: the reconstruction moves by scale(x) · t · directions[j] when f_j moves by t."""
        ...

    def scale(self, x: Tensor) -> Tensor:
        """[..., d_in] → [..., 1], the per-token factor on decoded directions."""
        ...

    def reconstruct(self, x: Tensor, f: Tensor) -> Tensor:
        """decode(f) for inputs x (x supplies per-token normalisation statistics); [..., d_in]."""
        ...


class DirectionSet:
    """Unit directions W [n, d]; codes are x·Wᵀ and decode(f) = f·W. W = I gives the neuron basis.

    Rows are normalised so that clamping one direction's code to α leaves the projection on it at α.
    """

    def __init__(self, weight: Tensor):
        if weight.ndim != 2:
            raise ValueError(f"directions must be a matrix [n_features, d_in], got shape {tuple(weight.shape)}")
        norms = weight.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError("directions must be non-zero")
        self.weight = weight / norms
        self.n_features, self.d_in = weight.shape

    @classmethod
    def neurons(cls, d_model: int, device: torch.device | str = "cpu") -> DirectionSet:
        return cls(torch.eye(d_model, device=device))

    def codes(self, x: Tensor) -> Tensor:
        _check_width(x, self.d_in)
        return x @ self.weight.to(x).T

    def directions(self) -> Tensor:
        return self.weight

    def scale(self, x: Tensor) -> Tensor:
        return torch.ones_like(x[..., :1])

    def reconstruct(self, x: Tensor, f: Tensor) -> Tensor:
        return f @ self.weight.to(f)


class LayerNormedDirections(DirectionSet):
    """Unit directions W [n, d] in layer-normed units: codes (x − μ)/(σ + ε)·Wᵀ, scale σ (per token).

    μ, σ are the mean and unbiased std over d, the convention of `clipsteer.sae.normalization`, so a
    clamp of α here is a clamp of α in the same units as a layer-normed SAE's feature.
    """

    @staticmethod
    def _stats(x: Tensor) -> tuple[Tensor, Tensor]:
        mu = x.mean(dim=-1, keepdim=True)
        return mu, (x - mu).std(dim=-1, keepdim=True)

    @classmethod
    def neurons(cls, d_model: int, device: torch.device | str = "cpu") -> LayerNormedDirections:
        return cls(torch.eye(d_model, device=device))

    def codes(self, x: Tensor) -> Tensor:
        _check_width(x, self.d_in)
        mu, sigma = self._stats(x)
        return ((x - mu) / (sigma + LAYER_NORM_EPS)) @ self.weight.to(x).T

    def scale(self, x: Tensor) -> Tensor:
        return self._stats(x)[1]

    def reconstruct(self, x: Tensor, f: Tensor) -> Tensor:
        mu, sigma = self._stats(x)
        return (f @ self.weight.to(f)) * sigma + mu


def _check_width(x: Tensor, d_in: int) -> None:
    if x.shape[-1] != d_in:
        raise ValueError(f"activations have width {x.shape[-1]}, but the dictionary expects d_in = {d_in} "
                         f"(is the SAE for a different model or site?)")
