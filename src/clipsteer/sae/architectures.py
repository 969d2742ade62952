"""Per-architecture facts in one table, so the rest of the package asks the table instead of comparing
architecture names. A new variant adds one `ArchSpec` here, its activation in `model.py`
(`SparseAutoencoder._activate`), and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clipsteer.sae.config import ARCHITECTURES, Architecture


@dataclass(frozen=True)
class ArchSpec:
    name: Architecture
    uses_k: bool
    """k sets the sparsity (exact per token, or on average per batch)."""
    penalty: Literal["l1", "l0"] | None
    """The sparsity term of the loss, weighted by the sparsity coefficient λ (None: k sets sparsity)."""
    dead_feature_loss: Literal["ghost_grads", "auxk"]
    """How dead features get a gradient."""
    threshold: Literal["per_feature", "batch"] | None
    """An inference threshold saved with the weights: one per feature (learned) or one for all (estimated)."""

    @property
    def sweep_name(self) -> str:
        """The knob a sweep varies: `k` or the sparsity coefficient `lambda`."""
        return "k" if self.uses_k else "lambda"


ARCH_SPECS: dict[str, ArchSpec] = {
    "relu": ArchSpec("relu", uses_k=False, penalty="l1", dead_feature_loss="ghost_grads", threshold=None),
    "topk": ArchSpec("topk", uses_k=True, penalty=None, dead_feature_loss="auxk", threshold=None),
    "batchtopk": ArchSpec("batchtopk", uses_k=True, penalty=None, dead_feature_loss="auxk", threshold="batch"),
    "jumprelu": ArchSpec("jumprelu", uses_k=False, penalty="l0", dead_feature_loss="ghost_grads",
                         threshold="per_feature"),
}
assert set(ARCH_SPECS) == set(ARCHITECTURES), "every architecture needs a spec"


def spec(architecture: str) -> ArchSpec:
    if architecture not in ARCH_SPECS:
        raise ValueError(f"unknown SAE architecture {architecture!r}; expected one of {sorted(ARCH_SPECS)}")
    return ARCH_SPECS[architecture]
