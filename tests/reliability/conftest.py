"""Shared fixtures of the fault-injection suite: a tiny CLIP, an image folder, a store and an SAE made once
per session through the real commands, and `cli(...)`, which runs `clipsteer` in-process as the console
entry point does (exit status and stderr)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsteer.cli import main
from clipsteer.models.testing import tiny_backbone

SITE = "blocks.1.resid_post"
# Training flags small enough for a few seconds on 2 cores (the tiny CLIP has d_model 32).
TRAIN_FLAGS = ["--expansion-factor", "2", "--trainer.tokens-per-batch", "32", "--trainer.total-tokens", "640",
               "--trainer.init-samples", "64", "--trainer.log-every", "5", "--trainer.checkpoint-every", "5",
               "--trainer.lr-warmup-steps", "2", "--trainer.no-progress"]


def make_images(folder: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"img_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_backbone(seed=0).save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_images(tmp_path_factory.mktemp("data") / "images", 24)


Cli = Callable[..., tuple[int, str]]


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
    from clipsteer.activations.harvest import HarvestConfig, harvest

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


def one_line(stderr: str) -> str:
    """The last stderr line, asserting it is clipsteer's one-line error and that no traceback was printed."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("clipsteer: error: "), stderr
    return last


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "HF_HUB_OFFLINE": "1"}
