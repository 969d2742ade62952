"""Read-only and full output folders: every command stops with one line naming the path (exit 2) and
leaves no torn or temporary files. A full disk needs a tiny tmpfs, mounted only when running as root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_helpers import SITE, TRAIN_FLAGS, Cli, one_line

from clipsteer.atomic import TMP_SUFFIX


def mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                            text=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")


@pytest.fixture
def readonly_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder nothing can be written into: a read-only tmpfs as root, else a chmod 555 folder."""
    where = tmp_path / "ro"
    if os.geteuid() == 0:
        mount_tmpfs(where, "ro,size=64k")
        yield where
        subprocess.run(["umount", str(where)], check=True)
    else:
        where.mkdir()
        where.chmod(0o555)
        yield where
        where.chmod(0o755)


@pytest.fixture
def full_dir(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs (root only: an ordinary user cannot mount one)."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a tiny tmpfs, which needs root to mount")
    where = tmp_path / "full"
    mount_tmpfs(where, "size=16k")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def commands(out: Path, store: Path, sae_dir: Path, model_dir: Path, images: Path, world_model: Path) -> dict[str, list]:
    return {
        "harvest": ["harvest", "--sites", SITE, "--out", out, "--model", model_dir, "--dataset", images,
                    "--images-per-batch", "8", "--shard-rows", "40", "--workers", "0"],
        "train": ["train", "--store", store, "--out", out, *TRAIN_FLAGS],
        "eval": ["eval", "--sae", sae_dir, "--out", out, "--model", world_model, "--n-images", "8",
                 "--n-patch-images", "4", "--images-per-batch", "4"],
        "steerability": ["steerability", "--out", out, "--sae", sae_dir, "--model", model_dir, "--images", images,
                         "--n-images", "4", "--vocab-size", "8", "--bases", "sae"],
    }


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(TMP_SUFFIX) or ".old" in p.name)


@pytest.mark.parametrize("command", ["harvest", "train", "eval", "steerability"])
def test_read_only_output_is_one_line_naming_the_path(command: str, readonly_dir: Path, cli: Cli, store: Path,
                                                      sae_dir: Path, model_dir: Path, images: Path,
                                                      world_geometry_model_dir: Path) -> None:
    out = readonly_dir / "out"
    code, stderr = cli(*commands(out, store, sae_dir, model_dir, images, world_geometry_model_dir)[command])
    line = one_line(stderr)
    assert code == 2 and str(out) in line, line
    assert "Read-only file system" in line or "Permission denied" in line, line
    assert list(readonly_dir.iterdir()) == []


@pytest.mark.parametrize("command", ["harvest", "train", "eval", "steerability"])
def test_full_disk_is_one_line_and_leaves_no_torn_files(command: str, full_dir: Path, cli: Cli, store: Path,
                                                        sae_dir: Path, model_dir: Path, images: Path,
                                                      world_geometry_model_dir: Path) -> None:
    out = full_dir / "out"
    code, stderr = cli(*commands(out, store, sae_dir, model_dir, images, world_geometry_model_dir)[command])
    line = one_line(stderr)
    assert code == 2 and "No space left on device" in line and str(out) in line, line
    assert leftovers(full_dir) == []
    result = {"harvest": out / SITE / "metadata.json", "train": out / "saes", "eval": out / "eval.json",
              "steerability": out / "summary.json"}[command]
    if command == "harvest" and result.is_file():   # a partial store stays visibly incomplete (and resumable)
        assert '"complete": false' in result.read_text()
    else:
        assert not result.exists()
