import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch


def _register_torchvision_op_schemas() -> None:
    """Let a stray CUDA torchvision import beside the CPU torch (see the Makefile's test venv).

    open_clip needs torchvision, and the torchvision wheel that resolves beside `torch==2.13.0+cpu` is a
    CUDA build whose C++ ops do not load, so `import torchvision` fails (`operator torchvision::nms does not
    exist`), and with it `import transformers`. Defining the two op schemas its Python side checks makes the
    import work; the ops themselves stay unusable (nothing here calls them). A working torchvision, or none,
    is left alone.
    """
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")  # noqa: TID251
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _register_torchvision_op_schemas.library = library  # type: ignore[attr-defined]  # keep it registered


_register_torchvision_op_schemas()

from clipsteer.models.testing import tiny_backbone  # noqa: E402  (after the torchvision fix-up)

# Tests must never reach the network, and must be repeatable on 2 cores.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def world_geometry_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved random CLIP with the synthetic world's geometry (64 px, 8×8 patches, d_model 32)."""
    return tiny_backbone(image_size=64, patch_size=8).save_pretrained(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def backbone():
    """The shared tiny random CLIP (3 blocks, d_model 32, 32 px, 4×4 patches, word tokenizer); tests must
    leave it as they found it (interventions remove their hooks on exit)."""
    return tiny_backbone(seed=0)
