"""Atomic file and directory writes: write under a temporary name in the same folder, then rename.

A reader never sees a half-written file, and a crash mid-write leaves the previous version intact.
Files and folders get the permissions a plain `open()` / `mkdir()` would give under the process's
umask (mkstemp alone would make them private), so colleagues can read shared stores and SAEs.
Failures to write (read-only folder, full disk) raise `OutputError` naming the target path.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save

from clipsteer.errors import OutputError, output_error

TMP_SUFFIX = ".tmp"  # every temporary name ends with it, so a resumed job can sweep leftovers


def fsync_dir(folder: Path) -> None:
    """Make renames inside `folder` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask (read by setting and restoring it, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_folder(folder: str | Path) -> Path:
    """mkdir -p, raising OutputError naming the folder when it cannot be created."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise output_error(folder, err, "create the folder") from err
    return folder


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> None:
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    except OSError as err:
        raise output_error(path, err) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise output_error(path, err) from err
        raise
    fsync_dir(path.parent)


def atomic_write_array(path: str | Path, array: np.ndarray) -> None:
    """Raw little-endian bytes of an array (no header: the reader's metadata gives the shape)."""
    assert array.dtype.byteorder in ("<", "=", "|") or array.dtype.itemsize == 1, "arrays are stored little-endian"
    assert np.little_endian, "clipsteer writes raw arrays on little-endian machines only"
    atomic_write_bytes(path, memoryview(np.ascontiguousarray(array)).cast("B"))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path,
                            metadata: dict[str, str] | None = None) -> None:
    """Save tensors (made contiguous, on CPU) as one safetensors file, atomically."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(cpu, metadata=metadata))


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces `path` (an existing folder is swapped out).

    On an exception the temporary folder is removed and `path` is untouched.
    """
    path = Path(path)
    make_folder(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent))
        tmp.chmod(0o777 & ~current_umask())
    except OSError as err:
        raise output_error(path, err) from err
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    try:
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)
        os.replace(tmp, path)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise output_error(path, err) from err
    fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
