"""Every architecture recovers a known dictionary from synthetic sparse data (d=32, 64 atoms, 5 active)."""

from __future__ import annotations

import pytest
import torch
from sparse_world import SparseWorld

from clipsteer.sae import ObjectiveConfig, SAEConfig, SAERecipe, TensorSource, Trainer, TrainerConfig

CASES = {
    # architecture: (k, objective) — the paper's objective (MSE_norm) throughout.
    "relu": (None, ObjectiveConfig(sparsity_coefficient=1e-2)),
    "topk": (5, ObjectiveConfig()),
    "batchtopk": (5, ObjectiveConfig()),
    "jumprelu": (None, ObjectiveConfig(sparsity_coefficient=3e-3, jumprelu_bandwidth=0.1, jumprelu_init_threshold=0.1)),
}


def recovered_fraction(atoms: torch.Tensor, W_dec: torch.Tensor, threshold: float = 0.9) -> float:
    """Fraction of true atoms whose best-matching decoder row has cosine ≥ threshold."""
    W = W_dec / W_dec.norm(dim=1, keepdim=True)
    return float(((atoms @ W.T).max(dim=1).values >= threshold).float().mean())


@pytest.mark.parametrize("architecture", list(CASES))
def test_recovers_known_dictionary(world: SparseWorld, architecture: str) -> None:
    k, objective = CASES[architecture]
    recipe = SAERecipe(architecture, SAEConfig(d_in=32, d_sae=128, architecture=architecture, k=k,
                                               normalization="none"), objective)
    config = TrainerConfig(tokens_per_batch=256, total_tokens=256 * 1000, lr=1e-2, lr_warmup_steps=20, init_samples=2048,
                           dead_feature_window=100, log_every=250, progress=False)
    trainer = Trainer([recipe], TensorSource(world.data), config)
    sae = trainer.run()[architecture]
    assert recovered_fraction(world.atoms, sae.W_dec.detach()) >= 0.9
    final = trainer.history[-1]
    assert final["explained_variance"] > 0.7
    assert final["l0"] < 15  # 5 atoms are active per input
    if architecture == "batchtopk":  # the inference threshold gives about k active features
        l0_eval = float((sae.encode(world.data[:2048]) > 0).sum(dim=-1).float().mean())
        assert 3 <= l0_eval <= 8
