"""Fixtures for store and loader tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from activation_helpers import make_spec, write_store

from clipsteer.activations.format import StoreSpec


@pytest.fixture
def store_factory(tmp_path: Path):
    counter = iter(range(10**6))

    def make(**kwargs) -> tuple[Path, torch.Tensor, StoreSpec]:
        skip = kwargs.pop("skip", ())
        spec = make_spec(**kwargs)
        directory = tmp_path / f"store{next(counter)}"
        rows = write_store(directory, spec, skip)
        return directory, rows, spec

    return make

