"""Make open_clip importable for these tests only.

open_clip needs torchvision, and the torchvision wheel that resolves beside the CPU `torch==2.13.0` is a
CUDA build whose C++ ops do not load: `import torchvision` fails ("operator torchvision::nms does not
exist"), and so does `import transformers` wherever it can see that torchvision. So `make test` installs
open_clip, timm and torchvision with --no-deps into a side folder (CLIPSTEER_OPEN_CLIP_SITE) that only
this directory puts on sys.path, after transformers was imported without it (the rest of the suite, and
every subprocess, never sees torchvision). Before the first import, the two op schemas torchvision checks
are defined; the ops stay unusable, and open_clip's CLIP does not call them.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import torch


def _add_open_clip_site() -> None:
    site = os.environ.get("CLIPSTEER_OPEN_CLIP_SITE")
    if site and os.path.isdir(site) and site not in sys.path:
        sys.path.append(site)  # after the venv: its packages (huggingface_hub, ...) keep precedence


def _register_torchvision_op_schemas() -> None:
    if importlib.util.find_spec("torchvision") is None:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        library = torch.library.Library("torchvision", "DEF")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARIES.append(library)  # keep the definitions alive for the session


_LIBRARIES: list[torch.library.Library] = []
_add_open_clip_site()
_register_torchvision_op_schemas()
