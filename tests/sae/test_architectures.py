"""The architecture table is the one place a variant lives: a variant added only to the table (and to the
accepted names) trains, saves, loads and exports without touching any other module."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from clipsteer.sae import (
    ObjectiveConfig,
    SAEConfig,
    SAERecipe,
    TensorSource,
    Trainer,
    TrainerConfig,
    architectures,
    load_sae,
)
from clipsteer.sae import config as sae_config
from clipsteer.sae.export import saelens_files
from clipsteer.sae.io import save_sae


def _shifted_relu(pre: Tensor, sae: object, bandwidth: float | None) -> tuple[Tensor, Tensor | None]:
    """ReLU(pre − 0.1): a made-up variant with a fixed margin."""
    return (pre - 0.1).relu(), None


@pytest.fixture
def shifted_relu(monkeypatch: pytest.MonkeyPatch) -> architectures.ArchSpec:
    new = replace(architectures.ARCH_SPECS["relu"], name="shifted_relu", activate=_shifted_relu,  # type: ignore[arg-type]
                  saelens_architecture=None, prisma_activation=None, fused_training=False)
    monkeypatch.setitem(architectures.ARCH_SPECS, "shifted_relu", new)
    monkeypatch.setattr(sae_config, "ARCHITECTURES", (*sae_config.ARCHITECTURES, "shifted_relu"))
    return new


def test_a_variant_added_only_to_the_table_trains_saves_and_loads(shifted_relu: architectures.ArchSpec,
                                                                  world: Any, tmp_path: Path) -> None:
    d = world.data.shape[1]
    recipe = SAERecipe("shifted", SAEConfig(d_in=d, d_sae=64, architecture="shifted_relu"),  # type: ignore[arg-type]
                       ObjectiveConfig(sparsity_coefficient=3e-3))
    trainer_config = TrainerConfig(tokens_per_batch=256, total_tokens=256 * 30, lr=5e-3, init_samples=256,
                                   progress=False)
    sae = Trainer([recipe], TensorSource(world.data), trainer_config, run_dir=tmp_path / "run").run()["shifted"]
    x = world.data[:50]
    codes = sae.encode(x)
    pre = sae.pre_activations(sae.normalize_input(x)[0])
    torch.testing.assert_close(codes, (pre - 0.1).relu())  # the table's function, not ReLU
    assert bool((codes == 0).any()) and bool((codes > 0).any())
    loaded = load_sae(save_sae(sae, tmp_path / "sae"))
    assert loaded.config.architecture == "shifted_relu"
    torch.testing.assert_close(loaded.encode(x), codes)
    with pytest.raises(ValueError, match="no SAELens equivalent"):
        saelens_files(loaded)


def test_every_architecture_has_a_consistent_spec() -> None:
    for name, spec in architectures.ARCH_SPECS.items():
        assert spec.name == name
        assert (spec.penalty is None) == spec.uses_k, name  # k or a penalty sets sparsity, never both
    with pytest.raises(ValueError, match="unknown SAE architecture 'gated'"):
        architectures.spec("gated")
