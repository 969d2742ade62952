"""Factor recovery: do SAE features detect the world's ground-truth factors?

For each factor (a binary label per image, or per patch using the world's patch masks), the best
single feature's AUROC, plus the two failure signatures the paper names, measured against truth:
- splitting: how many features detect the same factor with AUROC ≥ `split_threshold` (0.9);
- polysemanticity: how many distinct factors one feature detects with AUROC ≥ `poly_threshold` (0.8).
Image-level feature activation = max over the image's tokens (a feature "fires on the image").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from clipsteer.evaluate.auroc import auroc


@dataclass(frozen=True)
class FactorScore:
    factor: str
    best_feature: int
    auroc: float
    n_detectors: int  # features with AUROC ≥ split threshold (splitting when > 1)
    best_f1: float  # best F1 of "the feature fires" (activation > 0) as a detector of the factor


@dataclass(frozen=True)
class FactorRecovery:
    scores: tuple[FactorScore, ...]
    poly_counts: Tensor  # [F]: number of factors each feature detects with AUROC ≥ poly threshold

    @property
    def mean_f1(self) -> float:
        return sum(s.best_f1 for s in self.scores) / len(self.scores)

    def mean_f1_of(self, prefix: str) -> float:
        chosen = [s.best_f1 for s in self.scores if s.factor.startswith(prefix)]
        return sum(chosen) / len(chosen)

    @property
    def mean_auroc(self) -> float:
        return sum(s.auroc for s in self.scores) / len(self.scores)

    def mean_auroc_of(self, prefix: str) -> float:
        chosen = [s.auroc for s in self.scores if s.factor.startswith(prefix)]
        return sum(chosen) / len(chosen)

    def summary(self) -> dict:
        detecting = self.poly_counts[self.poly_counts > 0].float()
        return {
            "mean_auroc": round(self.mean_auroc, 4),
            "mean_firing_f1": round(self.mean_f1, 4),
            "factors": {s.factor: {"best_feature": s.best_feature, "auroc": round(s.auroc, 4),
                                   "n_detectors": s.n_detectors, "best_firing_f1": round(s.best_f1, 4)}
                        for s in self.scores},
            "splitting_mean_detectors": round(sum(s.n_detectors for s in self.scores) / len(self.scores), 3),
            "polysemantic_features": int((self.poly_counts > 1).sum()),
            "mean_factors_per_detecting_feature": round(float(detecting.mean()), 3) if len(detecting) else 0.0,
        }


def factor_auroc_table(activations: Tensor, factors: dict[str, Tensor]) -> tuple[list[str], Tensor]:
    """AUROC of every feature for every factor: (names [K], table [K, F]).

    activations [N, F] (one row per image, or per patch); factors {name: bool [N]}. Factors with no
    positives or no negatives in this sample are left out (AUROC is undefined).
    """
    if activations.ndim != 2:
        raise ValueError(f"activations must be [N, F], got {tuple(activations.shape)}")
    names, columns = [], []
    for name, labels in factors.items():
        labels = labels.bool()
        if labels.shape != activations.shape[:1]:
            raise ValueError(f"factor {name!r}: labels {tuple(labels.shape)} vs activations {tuple(activations.shape)}")
        if labels.all() or not labels.any():
            continue
        names.append(name)
        columns.append(labels)
    if not names:
        raise ValueError("no factor has both positive and negative examples in this sample")
    return names, auroc(activations, torch.stack(columns, dim=1)).cpu()


def firing_f1(activations: Tensor, labels: Tensor) -> Tensor:
    """F1 of each feature's firing (activation > 0) against each label column: [N, F] × [N, K] → [K, F].

    AUROC only asks whether positives rank higher; a dense feature that fires everywhere can still
    rank well. Firing F1 asks whether the feature is on exactly when the factor is present.
    """
    fires = (activations > 0).double()
    labels = labels.double().to(fires.device)
    true_pos = labels.T @ fires  # [K, F]
    denominator = fires.sum(dim=0)[None, :] + labels.sum(dim=0)[:, None]
    return (2 * true_pos / denominator.clamp(min=1)).float().cpu()


def factor_recovery(activations: Tensor, factors: dict[str, Tensor], split_threshold: float = 0.9,
                    poly_threshold: float = 0.8) -> FactorRecovery:
    """Best feature per factor, splitting and polysemanticity (see the module docstring)."""
    names, table = factor_auroc_table(activations, factors)
    f1 = firing_f1(activations, torch.stack([factors[name].bool() for name in names], dim=1))  # [K, F]
    best = table.argmax(dim=1)
    scores = tuple(FactorScore(name, int(best[i]), float(table[i, best[i]]), int((table[i] >= split_threshold).sum()),
                               float(f1[i].max()))
                   for i, name in enumerate(names))
    return FactorRecovery(scores, (table >= poly_threshold).long().sum(dim=0))


def image_level(token_acts: Tensor) -> Tensor:
    """[N, T, F] → [N, F], the max over tokens."""
    return token_acts.amax(dim=1)
