"""A Hugging Face cache laid out as huggingface_hub lays it out, filled from local files (no network).

    <cache>/models--<org>--<name>/refs/main               the commit hash
    <cache>/models--<org>--<name>/blobs/<sha256>          file contents
    <cache>/models--<org>--<name>/snapshots/<commit>/<path>   relative symlink to the blob
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest


def populate_hub_cache(cache: Path, repo_id: str, source: Path, subfolder: str | None = None,
                       commit: str = "0123456789abcdef0123456789abcdef01234567") -> Path:
    """Copy every file under `source` into the cached snapshot of `repo_id` (under `subfolder`)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        relative = file.relative_to(source)
        link = repo / "snapshots" / commit / (Path(subfolder) / relative if subfolder else relative)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache used by huggingface_hub for this test, offline."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield cache
    shutil.rmtree(cache, ignore_errors=True)
