"""ImageFolder: recursive sorted listing, RGB conversion, clear errors, stable fingerprints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipsteer.data import ImageDataset, ImageFolder, ImageReadError, open_dataset
from clipsteer.data.resolve import register_dataset_source


def save(path: Path, mode: str = "RGB", size: tuple[int, int] = (12, 9)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(len(str(path))).integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    Image.fromarray(arr, "RGBA").convert(mode).save(path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    save(tmp_path / "b.png")
    save(tmp_path / "a" / "z.JPG")
    save(tmp_path / "a" / "gray.png", mode="L")
    save(tmp_path / "c" / "d" / "alpha.png", mode="RGBA")
    save(tmp_path / "c" / "pal.gif", mode="P")
    (tmp_path / "notes.txt").write_text("not an image")
    save(tmp_path / ".hidden" / "x.png")
    save(tmp_path / "._resource.png")
    return tmp_path


def test_listing_is_recursive_sorted_and_skips_hidden(folder: Path) -> None:
    ds = ImageFolder(folder)
    assert isinstance(ds, ImageDataset)
    assert [ds.name(i) for i in range(len(ds))] == ["a/gray.png", "a/z.JPG", "b.png", "c/d/alpha.png", "c/pal.gif"]


def test_every_image_loads_as_rgb(folder: Path) -> None:
    ds = ImageFolder(folder)
    for i in range(len(ds)):
        img = ds.load(i)
        assert img.mode == "RGB" and img.size == (12, 9), ds.name(i)


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (4, 4), (10, 20, 30, 0)).save(tmp_path / "clear.png")
    assert ImageFolder(tmp_path).load(0).getpixel((0, 0)) == (255, 255, 255)


def test_corrupt_and_truncated_files_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    save(tmp_path / "cut.png", size=(64, 64))
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    ds = ImageFolder(tmp_path)
    for i in range(2):
        with pytest.raises(ImageReadError, match=rf"cannot read image .*{ds.name(i)}"):
            ds.load(i)
    (tmp_path / "bad.png").unlink()
    with pytest.raises(ImageReadError, match="not found"):
        ds.load(0)
    with pytest.raises(IndexError, match="out of range"):
        ds.load(5)


def test_fingerprint_tracks_the_file_set(folder: Path) -> None:
    first = ImageFolder(folder).fingerprint()
    assert ImageFolder(folder).fingerprint() == first
    save(folder / "e.png")
    second = ImageFolder(folder).fingerprint()
    assert second != first
    (folder / "e.png").rename(folder / "f.png")
    assert ImageFolder(folder).fingerprint() not in (first, second)


def test_missing_or_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files under"):
        ImageFolder(tmp_path / "empty")


def test_open_dataset(folder: Path, tmp_path: Path) -> None:
    assert len(open_dataset(str(folder))) == 5
    with pytest.raises(FileNotFoundError, match=r"expected an image folder path or '<source>:<spec>'.*'world'"):
        open_dataset(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no dataset source 'nope' is registered"):
        open_dataset("nope:train")


def test_registered_dataset_source(folder: Path) -> None:
    register_dataset_source("mine", lambda rest, split: ImageFolder(folder / rest))
    assert len(open_dataset("mine:.")) == 5


def test_labelled_formats_and_the_world_open_through_the_one_registry(folder: Path, tmp_path: Path) -> None:
    from labelled_fixtures import write_waterbirds

    labelled = open_dataset("world:background:8", "val")
    assert len(labelled) == 8 and set(labelled.labels()) >= {"label", "spurious"}
    root = write_waterbirds(tmp_path / "wb")
    assert len(open_dataset(f"waterbirds:{root}", "test")) == 16
    with pytest.raises(ValueError, match="Waterbirds: name a split; choose from"):
        open_dataset(f"waterbirds:{root}")
    with pytest.raises(ValueError, match="plain image folder and has no splits"):
        open_dataset(folder, "train")


def test_open_dataset_world_split() -> None:
    ds = open_dataset("world:train:6")
    assert isinstance(ds, ImageDataset) and len(ds) == 6
    img = ds.load(5)
    assert img.mode == "RGB" and img.size[0] == img.size[1]
    assert ds.fingerprint() == open_dataset("world:train:6").fingerprint() != open_dataset("world:val:6").fingerprint()
