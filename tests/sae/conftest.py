"""Fixtures for SAE tests: single-threaded torch (tiny tensors gain nothing from threads and lose a lot
to OpenMP barriers on a busy 2-core box; restored after each test) and a known sparse dictionary."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class SparseWorld:
    atoms: torch.Tensor  # [n_atoms, d], unit rows
    data: torch.Tensor   # [n, d]: each row a non-negative combination of `active` atoms


def sparse_world(d: int = 32, n_atoms: int = 64, active: int = 5, n: int = 16384, seed: int = 1) -> SparseWorld:
    g = torch.Generator().manual_seed(seed)
    atoms = torch.randn(n_atoms, d, generator=g)
    atoms /= atoms.norm(dim=1, keepdim=True)
    chosen = torch.rand(n, n_atoms, generator=g).argsort(dim=1)[:, :active]
    coef = torch.rand(n, active, generator=g) * 1.5 + 0.5
    codes = torch.zeros(n, n_atoms).scatter(1, chosen, coef)
    return SparseWorld(atoms=atoms, data=codes @ atoms)


@pytest.fixture(scope="session")
def world() -> SparseWorld:
    return sparse_world()
