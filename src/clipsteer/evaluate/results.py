"""The typed result of `clipsteer eval` (`eval.json`), its writer and reader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from clipsteer.results import ResultFile


@dataclass(frozen=True)
class Reconstruction:
    tokens: int
    explained_variance: float
    nmse: float
    cosine: float
    l0_cls: float | None
    """Mean active features on CLS tokens (None when the SAE reads no CLS token)."""
    l0_patches: float | None
    l0_patches_fraction: float | None
    """l0_patches / d_sae."""
    dead_fraction: float
    """Features that never fired on these tokens."""
    dense_fraction: float


@dataclass(frozen=True)
class Downstream:
    """CLIP's zero-shot behaviour with the SAE reconstruction spliced in (no error term)."""

    n_images: int
    classes: tuple[str, ...]
    embedding_cosine: float
    """Mean cosine between the image embeddings with and without the SAE."""
    kl_zero_shot: float
    """Mean KL(clean ‖ with SAE) of the zero-shot distribution over `classes`."""
    agreement: float
    """Fraction of images whose zero-shot argmax is unchanged."""
    ce_recovered_pct: float | None = None
    """(CE_zero − CE_sae) / (CE_zero − CE_clean) · 100 on labelled images (None without labels)."""
    accuracy_clean: float | None = None
    accuracy_sae: float | None = None
    accuracy_zero: float | None = None


@dataclass(frozen=True)
class FactorSummary:
    """Factor recovery on a `FactorAnnotated` dataset, each level beside an untrained SAE of the same shape.

    Mean best-feature AUROC / firing F1 per factor group (the part of a factor name before ':')."""

    image_auroc: dict[str, float]
    patch_auroc: dict[str, float]
    image_firing_f1: dict[str, float]
    control_image_auroc: dict[str, float]
    control_patch_auroc: dict[str, float]
    control_image_firing_f1: dict[str, float]
    image: dict = field(default_factory=dict)
    """Per-factor detail at image level (best feature, AUROC, detectors, firing F1; splitting; polysemanticity)."""
    patch: dict = field(default_factory=dict)

    @staticmethod
    def mean(by_group: dict[str, float], groups: tuple[str, ...] | None = None) -> float:
        chosen = [v for g, v in by_group.items() if groups is None or g in groups]
        if not chosen:
            raise ValueError(f"no factor group among {groups}; measured groups: {sorted(by_group)}")
        return sum(chosen) / len(chosen)


@dataclass(frozen=True)
class EvalResult(ResultFile):
    FILE: ClassVar[str] = "eval.json"

    sae: str
    site: str
    model: str
    dataset: str
    n_images: int
    reconstruction: Reconstruction
    density_histogram: dict
    downstream: Downstream | None
    """None when no zero-shot classes were available (no labels and no --classes)."""
    factor_recovery: FactorSummary | None
    """None unless the dataset carries ground-truth factors (the synthetic world)."""
    config: dict
