"""Each labelled reader on a fixture in its real on-disk format, and its errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clipsteer.data import ImageReadError
from clipsteer.data.labelled import DatasetFormatError, open_labelled
from clipsteer.data.protocol import LABEL, SPURIOUS, TEXT, NamedLabelledDataset, group_labels
from labelled_fixtures import (
    save_image,
    write_celeba,
    write_disentangling,
    write_label_text,
    write_waterbirds,
)


def test_waterbirds_reads_splits_labels_and_groups(tmp_path: Path) -> None:
    root = write_waterbirds(tmp_path / "wb")
    train = open_labelled(f"waterbirds:{root}", "train")
    assert isinstance(train, NamedLabelledDataset) and len(train) == 6 * 4
    assert train.label_names() == {LABEL: ("landbird", "waterbird"), SPURIOUS: ("land", "water")}
    labels = train.labels()
    # rows were written y-major, place-minor: 0,0 / 0,1 / 1,0 / 1,1 repeated
    assert labels[LABEL][:4].tolist() == [0, 0, 1, 1] and labels[SPURIOUS][:4].tolist() == [0, 1, 0, 1]
    group, names = group_labels(train)
    assert group[:4].tolist() == [0, 1, 2, 3] and names[1] == "landbird/water"
    assert train.name(2).startswith("002.Water_bird/")
    assert train.load(0).mode == "RGB" and train.load(0).size == (40, 30)
    assert len(open_labelled(f"waterbirds:{root}", "test")) == 16
    assert train.fingerprint() != open_labelled(f"waterbirds:{root}", "val").fingerprint()


def test_waterbirds_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        open_labelled(f"waterbirds:{tmp_path}", "train")
    with pytest.raises(FileNotFoundError, match="root not found"):
        open_labelled(f"waterbirds:{tmp_path / 'nope'}", "train")
    root = write_waterbirds(tmp_path / "wb")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        open_labelled(f"waterbirds:{root}", "dev")
    (root / "metadata.csv").write_text("img_filename,y,split\na.jpg,0,0\n")
    with pytest.raises(DatasetFormatError, match=r"missing columns \['place'\]"):
        open_labelled(f"waterbirds:{root}", "train")
    (root / "metadata.csv").write_text("img_filename,y,place,split\na.jpg,2,0,0\n")
    with pytest.raises(DatasetFormatError, match="'y' holds 2"):
        open_labelled(f"waterbirds:{root}", "train")


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = write_waterbirds(tmp_path / "wb")
    ds = open_labelled(f"waterbirds:{root}", "train")
    ds.path(1).write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match=ds.name(1)):
        ds.load(1)


def test_celeba_blond_vs_male(tmp_path: Path) -> None:
    root = write_celeba(tmp_path / "celeba")
    train = open_labelled(f"celeba:{root}", "train")
    assert len(train) == 6 and len(open_labelled(f"celeba:{root}", "test")) == 3
    labels = train.labels()
    assert labels[LABEL].tolist() == [0, 1, 0, 1, 0, 1] and labels[SPURIOUS].tolist() == [0, 0, 1, 1, 0, 0]
    assert train.label_names()[LABEL] == ("dark hair", "blond hair")
    assert train.name(0) == "img_align_celeba/000001.jpg" and train.load(5).mode == "RGB"
    (root / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DatasetFormatError, match="SPLIT 0, 1 or 2"):
        open_labelled(f"celeba:{root}", "train")
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        open_labelled(f"celeba:{tmp_path}", "train")


def test_rta100_and_paint_read_label_and_text_from_names(tmp_path: Path) -> None:
    root = write_label_text(tmp_path / "rta")
    for prefix in ("rta100", "paint"):
        ds = open_labelled(f"{prefix}:{root}", "test")
        names = ds.label_names()
        assert names[LABEL] == names[TEXT] == ("cat", "dog", "ice cream", "mouse")  # union of labels and words
        pairs = {(names[LABEL][a], names[TEXT][b]) for a, b in zip(ds.labels()[LABEL], ds.labels()[TEXT], strict=True)}
        assert pairs == {("dog", "cat"), ("cat", "mouse"), ("mouse", "dog"), ("ice cream", "dog")}
    with pytest.raises(ValueError, match="unknown split 'train'"):
        open_labelled(f"rta100:{root}", "train")
    save_image(root / "holiday.png", (0, 0, 0))
    with pytest.raises(DatasetFormatError, match="holiday.png is not named label=X_text=Y"):
        open_labelled(f"paint:{root}", "test")


def test_disentangling_annotations_and_classes(tmp_path: Path) -> None:
    root = write_disentangling(tmp_path / "dis")
    ds = open_labelled(f"disentangling:{root}", "test")
    names, labels = ds.label_names(), ds.labels()
    assert names[LABEL] == ("apple", "cup", "pen")
    assert [names[LABEL][v] for v in labels[LABEL]] == ["cup", "apple", "cup"]
    assert [names[TEXT][v] for v in labels[TEXT]] == ["good", "cup", "apple"]  # "good" is not a class
    (root / "annotations.json").write_text('{"IMG_0001.JPG": {"true object": "cup"}}')
    with pytest.raises(DatasetFormatError, match="typographic attack label"):
        open_labelled(f"disentangling:{root}", "test")


def test_labels_csv_folder(tmp_path: Path) -> None:
    for i in range(4):
        save_image(tmp_path / f"im{i}.png", (i * 40, 0, 0))
    (tmp_path / "labels.csv").write_text("file,label,spurious,split\nim0.png,cat,indoor,a\nim1.png,dog,outdoor,a\n"
                                         "im2.png,dog,,b\nim3.png,cat,outdoor,b\n")
    a = open_labelled(f"csv:{tmp_path}", "a")
    assert a.labels()[LABEL].tolist() == [0, 1] and a.label_names()[SPURIOUS] == ("indoor", "outdoor")
    b = open_labelled(f"csv:{tmp_path}", "b")
    assert b.labels()[SPURIOUS].tolist() == [-1, 0]  # empty cell: unknown
    assert b.label_names()[SPURIOUS] == ("outdoor",)
    with pytest.raises(ValueError, match="unknown split 'c'"):
        open_labelled(f"csv:{tmp_path}", "c")
    (tmp_path / "labels.csv").write_text("path,label\nim0.png,cat\n")
    with pytest.raises(DatasetFormatError, match="missing column 'file'"):
        open_labelled(f"csv:{tmp_path}", "a")


def test_unknown_prefix_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="waterbirds"):
        open_labelled("imagenet:/data", "train")


def test_world_group_tasks_come_through_the_same_protocol() -> None:
    from clipsteer.world.evalsets import group_names

    ds = open_labelled("world:background:8", "val")
    assert isinstance(ds, NamedLabelledDataset) and len(ds) == 8
    group, names = group_labels(ds)
    assert group.tolist() == [i % 4 for i in range(8)]  # evalsets: item i is in group i % 4
    assert names == group_names("background")
    attribute = open_labelled("world:attribute:4", "test")
    assert attribute.label_names()[SPURIOUS] == ("red", "yellow")
    typo = open_labelled("world:typographic/attacked:4", "train")
    labels = typo.labels()
    assert (labels[TEXT] != labels[LABEL]).all()
    mask = typo.text_mask(0)
    assert mask.shape == (64, 64) and mask.any()
    clean = open_labelled("world:typographic/clean:4", "train")
    assert not clean.text_mask(0).any() and np.array_equal(clean.labels()[TEXT], labels[TEXT])
