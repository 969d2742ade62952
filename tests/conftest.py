import os
import sys
from pathlib import Path

import pytest
import torch

from clipsteer.models.testing import tiny_backbone

# Tests must never reach the network, and must be repeatable on 2 cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def open_clip_site_only_in_interop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/interop puts open_clip's side folder (with a torchvision that breaks transformers) on sys.path;
    every other test runs without it, so the processes it spawns (multiprocessing passes sys.path on) and
    the subprocesses it starts never see it either."""
    site = os.environ.get("CLIPSTEER_OPEN_CLIP_SITE")
    if site and "interop" not in Path(str(request.node.path)).parts:
        monkeypatch.setattr(sys, "path", [p for p in sys.path if p != site])


@pytest.fixture(scope="session")
def world_geometry_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random CLIP with the synthetic world's geometry (64 px, 8×8 patches, d_model 32)."""
    return tiny_backbone(image_size=64, patch_size=8).save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def backbone():
    """The shared tiny random CLIP (3 blocks, d_model 32, 32 px, 4×4 patches, word tokenizer); tests must
    leave it as they found it (interventions remove their hooks on exit)."""
    return tiny_backbone(seed=0)
