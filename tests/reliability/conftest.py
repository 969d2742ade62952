"""Shared fixtures of the fault-injection suite: a tiny CLIP, an image folder, a store and an SAE made once
per session through the real commands, and `cli(...)`, which runs `clipsteer` in-process as the console
entry point does (exit status and stderr)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from reliability_helpers import SITE, TRAIN_FLAGS, Cli, make_images

from clipsteer.cli import main
from clipsteer.models.testing import tiny_backbone


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_backbone(seed=0).save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("data") / "images", 24)




@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli("train", "--store", ...) → (exit status, stderr), exactly as the console entry point ends."""
    def run(*args: str | Path) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["clipsteer", *map(str, args)])
        monkeypatch.delenv("CLIPSTEER_DEBUG", raising=False)
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        return code, capsys.readouterr().err
    return run


@pytest.fixture(scope="session")
def store(model_dir: Path, images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete store of 24 images × 5 tokens = 120 rows in 3 shards (never modified by tests: copy it)."""
    from clipsteer.activations.configs import HarvestConfig
    from clipsteer.activations.harvest import harvest

    out = tmp_path_factory.mktemp("acts")
    harvest(HarvestConfig(sites=(SITE,), out=out, model=str(model_dir), dataset=str(images), images_per_batch=8,
                          shard_rows=40, workers=0))
    return out / SITE


@pytest.fixture(scope="session")
def sae_dir(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from clipsteer.cli import run_command

    out = tmp_path_factory.mktemp("train")
    folders = run_command(["train", "--store", str(store), "--out", str(out), *TRAIN_FLAGS])
    return next(iter(folders.values()))
