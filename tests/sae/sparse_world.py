"""A known sparse dictionary for SAE recovery tests (a module, not conftest, so tests can import its type
whichever conftest pytest imported first)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SparseWorld:
    atoms: torch.Tensor  # [n_atoms, d], unit rows
    data: torch.Tensor  # [n, d]: each row a non-negative combination of `active` atoms


def sparse_world(d: int = 32, n_atoms: int = 64, active: int = 5, n: int = 16384, seed: int = 1) -> SparseWorld:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :active]
    coef = torch.rand(n, active, generator=g) * 1.5 + 0.5
    codes = torch.zeros(n, n_atoms).scatter(1, chosen, coef)
    return SparseWorld(atoms=atoms, data=codes @ atoms)
