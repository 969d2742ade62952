"""Reconstruction metrics of an SAE on activations, accumulated over batches of whole images.

- L0: non-zero features per token, reported separately for the CLS token and for patch tokens
  (the paper: patch tokens are far denser than CLS in early layers).
- Explained variance: 1 − Σ‖x̂ − x‖² / Σ‖x − μ‖², μ the mean activation over the evaluated set
  (a dataset-level EV; Prisma's per-batch variant centres by the batch mean instead).
- Normalised MSE: Σ‖x̂ − x‖² / Σ‖x‖²; cosine: mean over tokens of cos(x, x̂).
- Feature frequency: share of tokens on which each feature fires → dead (never fires on the set)
  and dense (fires on more than `dense_threshold` of tokens) fractions, and a density histogram.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ReconstructionMeter:
    d_sae: int
    dense_threshold: float = 0.1
    _sq_err: float = 0.0
    _sq_norm: float = 0.0
    _sum: Tensor | None = None
    _sum_sq: float = 0.0
    _cos: float = 0.0
    _tokens: int = 0
    _l0: dict[str, list[float]] = field(default_factory=lambda: {"cls": [0.0, 0], "patches": [0.0, 0]})
    _fires: Tensor | None = None

    def update(self, x: Tensor, x_hat: Tensor, codes: Tensor, has_cls: bool = True) -> None:
        """x, x_hat [B, T, d]; codes [B, T, d_sae]. With has_cls, token 0 is the CLS token."""
        assert x.shape == x_hat.shape and codes.shape[:2] == x.shape[:2] and codes.shape[-1] == self.d_sae
        x, x_hat = x.double(), x_hat.double()
        flat = x.reshape(-1, x.shape[-1])
        self._sq_err += float((x_hat - x).pow(2).sum())
        self._sq_norm += float(x.pow(2).sum())
        self._sum = flat.sum(0) if self._sum is None else self._sum + flat.sum(0)
        self._sum_sq += float(flat.pow(2).sum())
        self._cos += float(F.cosine_similarity(x_hat, x, dim=-1).sum())
        self._tokens += flat.shape[0]
        active = codes != 0
        l0 = active.sum(-1).double()  # [B, T]
        if has_cls:
            self._l0["cls"][0] += float(l0[:, 0].sum())
            self._l0["cls"][1] += l0.shape[0]
            l0 = l0[:, 1:]
        self._l0["patches"][0] += float(l0.sum())
        self._l0["patches"][1] += l0.numel()
        fires = active.reshape(-1, self.d_sae).sum(0)
        self._fires = fires if self._fires is None else self._fires + fires

    def frequencies(self) -> Tensor:
        """[d_sae]: share of evaluated tokens on which each feature fires."""
        assert self._fires is not None, "no batches seen"
        return self._fires.double() / self._tokens

    def result(self) -> dict:
        assert self._tokens > 0 and self._sum is not None, "no batches seen"
        total_var = self._sum_sq - float(self._sum.pow(2).sum()) / self._tokens  # Σ‖x − μ‖²
        freq = self.frequencies()
        mean_l0 = {k: (s / n if n else None) for k, (s, n) in self._l0.items()}
        return {
            "tokens": self._tokens,
            "explained_variance": 1 - self._sq_err / total_var,
            "nmse": self._sq_err / self._sq_norm,
            "cosine": self._cos / self._tokens,
            "l0_cls": mean_l0["cls"],
            "l0_patches": mean_l0["patches"],
            "l0_patches_fraction": None if mean_l0["patches"] is None else mean_l0["patches"] / self.d_sae,
            "dead_fraction": float((freq == 0).double().mean()),
            "dense_fraction": float((freq > self.dense_threshold).double().mean()),
        }


def density_histogram(frequencies: Tensor, bins: int = 20) -> dict:
    """Histogram of log10 firing frequency over features that fire at least once (dead ones counted apart)."""
    alive = frequencies[frequencies > 0]
    dead = int((frequencies == 0).sum())
    if len(alive) == 0:
        return {"dead": dead, "edges": [], "counts": []}
    logf = alive.log10()
    lo, hi = float(logf.min()), max(float(logf.max()), float(logf.min()) + 1e-6)
    counts = torch.histc(logf.float(), bins=bins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, bins + 1)
    return {"dead": dead, "edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}
