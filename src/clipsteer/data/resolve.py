"""Turn a dataset spec string (a CLI value) into an ImageDataset.

Specs:
- a directory path            → `ImageFolder(path)`
- `world:<split>`             → the synthetic world's split (provided by `clipsteer.world`)
"""

from __future__ import annotations

from pathlib import Path

from clipsteer.data.folder import ImageFolder
from clipsteer.data.protocol import ImageDataset

WORLD_PREFIX = "world:"


def open_dataset(spec: str | Path) -> ImageDataset:
    """Open the dataset named by `spec` (see module docstring); errors name the spec and the choices."""
    text = str(spec)
    if text.startswith(WORLD_PREFIX):
        return _open_world(text[len(WORLD_PREFIX):])
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolder(path)
    raise FileNotFoundError(f"dataset {text!r}: no such directory; expected an image folder path or "
                            f"'{WORLD_PREFIX}<split>' for the synthetic world")


def _open_world(split: str) -> ImageDataset:
    try:
        from clipsteer.world.dataset import open_world_dataset  # type: ignore[import-not-found]
    except ImportError as err:
        raise ValueError(f"dataset '{WORLD_PREFIX}{split}': the synthetic world's dataset adapter "
                         f"(clipsteer.world.dataset.open_world_dataset) is not available: {err}") from err
    return open_world_dataset(split)
