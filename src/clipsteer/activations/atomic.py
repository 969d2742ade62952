"""Atomic file writes: write a temporary sibling, fsync, then rename over the target.

A reader (or a resumed harvest) therefore sees either the old file or the complete new one, never a
partial write, even if the process is killed mid-write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

TMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_array(path: Path, array: np.ndarray) -> None:
    """Raw little-endian bytes of a C-contiguous array (no header; the store's metadata gives the shape)."""
    assert array.dtype.byteorder in ("<", "=", "|") or array.dtype.itemsize == 1, "store arrays are little-endian"
    assert np.little_endian, "clipsteer stores are written on little-endian machines only"
    atomic_write_bytes(path, memoryview(np.ascontiguousarray(array)).cast("B"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def fsync_dir(path: Path) -> None:
    """Make renames inside `path` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
