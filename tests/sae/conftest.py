"""Fixtures for SAE tests: single-threaded torch (tiny tensors gain nothing from threads and lose a lot
to OpenMP barriers on a busy 2-core box; restored after each test) and a known sparse dictionary."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from sparse_world import SparseWorld, sparse_world


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def world() -> SparseWorld:
    return sparse_world()
