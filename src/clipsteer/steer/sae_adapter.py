"""An SAE seen as a steering dictionary (see clipsteer.steer.dictionary)."""

from __future__ import annotations

import torch
from torch import Tensor

from clipsteer.sae.model import SparseAutoencoder
from clipsteer.sae.normalization import normalize


class SAEDictionary:
    """codes = sae.encode(x); directions = W_dec rows; scale = the SAE's per-token de-normalisation factor."""

    def __init__(self, sae: SparseAutoencoder):
        self.sae = sae.eval()
        self.d_in, self.n_features = sae.d_in, sae.d_sae

    @torch.no_grad()
    def codes(self, x: Tensor) -> Tensor:
        return self.sae.encode(x).to(x.dtype)

    def directions(self) -> Tensor:
        return self.sae.W_dec.detach()

    @torch.no_grad()
    def scale(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(self.sae.W_dec.dtype)
        stats = normalize(flat, self.sae.config.normalization, getattr(self.sae, "input_scale", None))[1]
        scale = torch.as_tensor(stats.scale, dtype=x.dtype, device=x.device)
        return scale.expand(flat.shape[0], 1).reshape(*x.shape[:-1], 1)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, f: Tensor) -> Tensor:
        return self.sae.decode(f, x=x).to(x.dtype)
