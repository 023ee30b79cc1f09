"""Split lists as people write them (issue 14 §5): a byte-order mark, CRLF, UTF-16 and stray
blanks are read by every list reader, and ids written as file names are accepted when they name
an existing image, or the error hints at the extension."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from test_standard_datasets import make_ade, make_cityscapes, make_voc

from dualteacher.data.check import check_data
from dualteacher.data.core import DataError, read_id_list
from dualteacher.data.folder import read_classes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import import_split, read_entries

from scenes import make_scenes

WRITTEN = {
    "utf-8 with BOM and CRLF": codecs.BOM_UTF8 + b"a\r\n  b \r\n\r\nc\r\n",
    "utf-16 (Windows 'Unicode')": "a\r\nb\r\nc\r\n".encode("utf-16"),
    "two lists joined with cat": codecs.BOM_UTF8 + b"a\nb\n" + codecs.BOM_UTF8 + b"c\n",
    "tabs and no final newline": b"\ta\t\nb\nc",
}


@pytest.mark.parametrize("data", WRITTEN.values(), ids=WRITTEN.keys())
def test_every_list_reader_strips_bom_blanks_and_crlf(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_bytes(data)
    (tmp_path / "classes.txt").write_bytes(data.replace(b"\r\n\r\n", b"\r\n"))  # a blank class is an error
    assert read_id_list(tmp_path / "splits" / "train.txt") == ["a", "b", "c"]
    assert open_source("folder", tmp_path).split_ids("train") == ["a", "b", "c"]
    assert read_entries(tmp_path / "splits" / "train.txt") == ["a", "b", "c"]
    assert read_classes(tmp_path) == ["a", "b", "c"]


def test_a_list_that_is_not_text_is_named(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_bytes(b"a\n\xff\xfe\xfa\n")
    with pytest.raises(DataError, match=r"train\.txt is not UTF-8 text"):
        read_id_list(tmp_path / "train.txt")


def test_the_check_and_training_read_a_bom_list_like_a_plain_one(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "scenes")
    labeled = root / "splits" / "labeled.txt"
    labeled.write_bytes(codecs.BOM_UTF8 + labeled.read_bytes().replace(b"\n", b"\r\n"))
    source = open_source("folder", root)
    assert source.split_ids("labeled") == ["train000", "train001", "train002", "train003"]
    report = check_data(source, {"labeled": "labeled", "val": "val"}, full=False)
    assert report.errors == [] and report.sizes["labeled"] == 4


def test_folder_ids_written_as_file_names(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "scenes")
    (root / "splits" / "labeled.txt").write_text("train000.png\nimages/train001.png\ntrain002\n")
    (root / "splits" / "wrong.txt").write_text("train003.jpg\n")
    (root / "splits" / "twice.txt").write_text("train000\ntrain000.png\n")
    source = open_source("folder", root)
    assert source.split_ids("labeled") == ["train000", "train001", "train002"]
    assert source.dataset(source.split_ids("labeled"), labeled=True)[0]["mask"].shape == (48, 48)
    report = check_data(source, {"labeled": "labeled", "val": "val"}, full=False)
    assert report.errors == []

    report = check_data(source, {"labeled": "wrong", "val": "val"}, full=False)
    assert [f.message for f in report.errors if f.kind == "image-missing"] == [
        "no image file for id 'train003.jpg' ('train003.jpg' looks like a file name but names no image: "
        "list ids without the extension, e.g. 'train003')"
    ]
    with pytest.raises(
        DataError, match=r"train003\.jpg\.jpg \(or \.jpeg/\.png\) \('train003\.jpg' looks like a file name"
    ):
        source.dataset(source.split_ids("wrong"), labeled=True)
    report = check_data(source, {"labeled": "twice", "val": "val"}, full=False)
    assert [f.message for f in report.errors] == ["id 'train000' listed 2 times (lines 1, 2)"]


@pytest.mark.parametrize(
    ("dataset", "make", "entries", "ids", "wrong"),
    [
        (
            "voc",
            make_voc,
            ["2007_000000.jpg", "JPEGImages/2007_000001.jpg"],
            ["2007_000000", "2007_000001"],
            "2007_000002.png",
        ),
        (
            "cityscapes",
            make_cityscapes,
            ["aachen_000000_000000_leftImg8bit.png", "leftImg8bit/train/bochum/bochum_000000_000001_leftImg8bit.png"],
            ["train/aachen/aachen_000000_000000", "train/bochum/bochum_000000_000001"],
            "aachen_000000_000002.jpg",
        ),
        (
            "ade20k",
            make_ade,
            ["ADE_train_00000001.jpg", "images/training/ADE_train_00000002.jpg"],
            ["ADE_train_00000001", "ADE_train_00000002"],
            "ADE_train_00000003.png",
        ),
    ],
)
def test_standard_readers_accept_file_names_in_split_lists(
    tmp_path: Path, dataset: str, make, entries: list[str], ids: list[str], wrong: str
) -> None:
    root = make(tmp_path / dataset)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "mine.txt").write_bytes(codecs.BOM_UTF8 + "\r\n".join(entries).encode())
    (splits / "wrong.txt").write_text(f"{wrong}\n")
    source = open_source(dataset, root, splits)
    assert source.split_ids("mine") == ids
    assert len(source.dataset(ids, labeled=True)) == 2
    with pytest.raises(DataError, match=f"{wrong!r} looks like a file name but names no image"):
        source.dataset(source.split_ids("wrong"), labeled=True)


def test_imported_lists_with_a_bom(tmp_path: Path) -> None:
    voc = make_voc(tmp_path / "voc")
    public = tmp_path / "labeled.txt"
    public.write_bytes(
        codecs.BOM_UTF8 + b"2007_000000\r\nJPEGImages/2007_000001.jpg SegmentationClass/2007_000001.png\r\n"
    )
    labeled, _ = import_split(open_source("voc", voc, tmp_path / "splits"), public, "mine")
    assert read_id_list(labeled) == ["2007_000000", "2007_000001"]
