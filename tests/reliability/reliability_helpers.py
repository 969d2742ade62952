"""Constants and helpers shared by the fault-injection tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

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


def one_line(stderr: str) -> str:
    """The last stderr line, asserting it is clipsteer's one-line error and that no traceback was printed."""
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("clipsteer: error: "), stderr
    return last


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p != os.environ.get("CLIPSTEER_OPEN_CLIP_SITE")), "HF_HUB_OFFLINE": "1"}


Cli = Callable[..., tuple[int, str]]
