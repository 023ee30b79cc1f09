"""PASCAL VOC, Cityscapes and ADE20K readers on micro trees in their official layouts: label
mapping, ignore handling, layout errors, split sizes and nesting, split import, short runs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.data.core import DataError, read_id_list
from dualteacher.data.registry import default_splits_dir, open_source
from dualteacher.data.split_files import import_split, split_source
from dualteacher.data.splits import make_split
from dualteacher.data.standard import (
    ADE20K_CLASSES,
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    ade20k_label_map,
    cityscapes_label_map,
)
from dualteacher.training.loop import Trainer, train

from conftest import tiny_overrides
from dataset_trees import ADE_VALUES, CITY_IDS, VOC_VALUES, H, W, labels, make_ade, make_cityscapes, make_voc, save_gray


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("benchmarks")
    return {
        "voc": make_voc(base / "voc"),
        "cityscapes": make_cityscapes(base / "cityscapes"),
        "ade20k": make_ade(base / "ade"),
    }


def test_class_lists() -> None:
    assert (len(VOC_CLASSES), len(CITYSCAPES_CLASSES), len(ADE20K_CLASSES)) == (21, 19, 150)
    assert len(set(ADE20K_CLASSES)) == 150


def test_voc_palette_indices_are_classes_and_boundaries_ignored(trees, tmp_path: Path) -> None:
    voc = open_source("voc", trees["voc"], tmp_path)
    assert voc.split_ids("train") == [f"2007_00000{i}" for i in range(4)]
    assert len(voc.split_ids("val")) == 2
    sample = voc.dataset(voc.split_ids("val"), labeled=True)[1]
    assert sample["image"].shape == (3, H, W)
    np.testing.assert_array_equal(sample["mask"].numpy(), labels(5, VOC_VALUES))
    assert set(sample["mask"].unique().tolist()) == {0, 5, 20, 255}


def test_voc_pools_classic_and_blended(trees, tmp_path: Path) -> None:
    voc = open_source("voc", trees["voc"], tmp_path)
    aug = open_source("voc_aug", trees["voc"], tmp_path)
    pool = voc.split_ids("train_aug")
    assert len(pool) == 12 and not set(pool) & set(voc.split_ids("val"))
    assert aug.split_ids("train") == pool
    assert voc.default_unlabeled_pool("train") == "train_aug" and aug.default_unlabeled_pool("train") == "train"
    # Blended: SBD (class-index) masks for training ids, the fine masks for val ids.
    train_mask = aug.dataset(["2009_000003"], labeled=True)[0]["mask"]
    np.testing.assert_array_equal(train_mask.numpy(), labels(9, [0, 1, 2]))
    val_mask = aug.dataset(["2008_000000"], labeled=True)[0]["mask"]
    np.testing.assert_array_equal(val_mask.numpy(), labels(4, VOC_VALUES))
    # Classic: labelled from the 1,464 fine ids, unlabelled = the rest of train_aug.
    labeled, unlabeled = split_source(voc, 2, seed=0)
    lab, unl = read_id_list(labeled), read_id_list(unlabeled)
    assert len(lab) == 2 and set(lab) < set(voc.split_ids("train"))
    assert sorted(lab + unl) == sorted(pool)
    # SBD-only images have no fine mask: labelled use is refused with the file named.
    with pytest.raises(DataError, match=r"SegmentationClass[/\\]2009_000000\.png"):
        voc.dataset(["2009_000000"], labeled=True)
    assert len(voc.dataset(["2009_000000"], labeled=False)) == 1


def test_voc_train_aug_list_is_used_when_present(tmp_path: Path) -> None:
    voc = open_source("voc_aug", make_voc(tmp_path / "v", train_aug_list=True), tmp_path / "s")
    assert len(voc.split_ids("train")) == 10


def test_cityscapes_label_ids_become_train_ids(trees, tmp_path: Path) -> None:
    city = open_source("cityscapes", trees["cityscapes"], tmp_path)
    train_ids = city.split_ids("train")
    assert len(train_ids) == 6 and train_ids[0] == "train/aachen/aachen_000000_000000"
    assert city.split_ids("val") == [f"val/frankfurt/frankfurt_000000_{i:06d}" for i in range(2)]
    mask = city.dataset(train_ids[:1], labeled=True)[0]["mask"].numpy()
    expected = cityscapes_label_map()[labels(0, CITY_IDS)]
    np.testing.assert_array_equal(mask, expected)
    assert set(np.unique(mask).tolist()) == {0, 13, 18, 255}  # road, car, bicycle, rest ignored
    table = cityscapes_label_map()
    assert table[7] == 0 and table[33] == 18 and table[6] == 255 and table[34] == 255
    assert int((table != 255).sum()) == 19


def test_cityscapes_prefers_ready_made_train_ids(tmp_path: Path) -> None:
    root = make_cityscapes(tmp_path / "c")
    city = open_source("cityscapes", root, tmp_path / "s")
    sample_id = city.split_ids("val")[0]
    trainids = np.full((H, W), 4, np.uint8)
    trainids[0, :] = 255
    save_gray(root / "gtFine" / f"{sample_id}_gtFine_labelTrainIds.png", trainids)
    mixed = city.dataset(city.split_ids("val"), labeled=True)  # one image lacks trainIds: labelIds for all
    assert mixed.label_map is not None
    only = city.dataset([sample_id], labeled=True)
    assert only.label_map is None
    np.testing.assert_array_equal(only[0]["mask"].numpy(), trainids)


def test_ade20k_zero_is_ignored_and_classes_shift_down(trees, tmp_path: Path) -> None:
    ade = open_source("ade20k", trees["ade20k"], tmp_path)
    assert ade.split_ids("train")[0] == "ADE_train_00000001" and len(ade.split_ids("train")) == 6
    assert ade.split_ids("val") == ["ADE_val_00000001", "ADE_val_00000002"]
    mask = ade.dataset(["ADE_val_00000002"], labeled=True)[0]["mask"]
    np.testing.assert_array_equal(mask.numpy(), ade20k_label_map()[labels(7, ADE_VALUES)])
    assert set(mask.unique().tolist()) == {255, 0, 149, 41}


def test_ade20k_values_beyond_150_are_refused(tmp_path: Path) -> None:
    root = make_ade(tmp_path / "a")
    save_gray(root / "annotations" / "training" / "ADE_train_00000001.png", np.full((H, W), 200, np.uint8))
    ade = open_source("ade20k", root, tmp_path / "s")
    with pytest.raises(DataError, match=r"after the label mapping.*\[199\]"):
        ade.dataset(["ADE_train_00000001"], labeled=True)[0]


@pytest.mark.parametrize(
    ("dataset", "missing"),
    [
        ("voc", "SegmentationClass"),
        ("voc_aug", "SegmentationClassAug"),
        ("cityscapes", "gtFine"),
        ("ade20k", "annotations"),
    ],
)
def test_layout_is_checked_up_front(tmp_path: Path, dataset: str, missing: str) -> None:
    for part in (
        "JPEGImages",
        "ImageSets/Segmentation",
        "leftImg8bit/train",
        "leftImg8bit/val",
        "images/training",
        "images/validation",
    ):
        (tmp_path / part).mkdir(parents=True)
    for name in ("train.txt", "val.txt"):
        (tmp_path / "ImageSets/Segmentation" / name).write_text("a\n")
    with pytest.raises(DataError, match=rf"(?s){dataset}: .*official layout.*missing:.*{missing}"):
        open_source(dataset, tmp_path, tmp_path / "splits")
    with pytest.raises(DataError, match="not a directory"):
        open_source(dataset, tmp_path / "nowhere", tmp_path / "splits")


def test_missing_files_of_a_list_are_named(trees, tmp_path: Path) -> None:
    city = open_source("cityscapes", trees["cityscapes"], tmp_path)
    with pytest.raises(DataError, match=r"2 file\(s\) missing.*\n.*aachen_000000_000009_leftImg8bit\.png"):
        city.dataset(["train/aachen/aachen_000000_000009"], labeled=True)


@pytest.mark.parametrize(
    ("total", "budgets", "sizes"),
    [
        (1464, [92, 183, 366, 732, 1464], [92, 183, 366, 732, 1464]),
        (10582, [1 / 16, 1 / 8, 1 / 4], [662, 1323, 2646]),
        (2975, [1 / 16, 1 / 8, 1 / 4, 1 / 2], [186, 372, 744, 1488]),
        (20210, [631, 1263, 2526, 5052, 10105], [631, 1263, 2526, 5052, 10105]),
    ],
    ids=["voc-classic", "voc-blended", "cityscapes", "ade20k"],
)
def test_protocol_split_sizes_and_nesting(total: int, budgets: list, sizes: list[int]) -> None:
    ids = [f"id{i:05d}" for i in range(total)]
    labeled = [set(make_split(ids, b, seed=1)[0]) for b in budgets]
    assert [len(s) for s in labeled] == sizes
    assert all(small <= large for small, large in itertools.pairwise(labeled))


def test_split_command_writes_to_the_splits_dir(trees, tmp_path: Path) -> None:
    args = ["split", "--dataset", "cityscapes", "--data", str(trees["cityscapes"]), "--splits-dir", str(tmp_path)]
    assert main([*args, "--labeled", "1/2", "--seed", "0"]) == 0
    assert main([*args, "--labeled", "4", "--seed", "0"]) == 0
    half, four = read_id_list(tmp_path / "labeled_1-2_seed0.txt"), read_id_list(tmp_path / "labeled_4_seed0.txt")
    assert len(half) == 3 and len(four) == 4 and set(half) < set(four)
    assert sorted(half + read_id_list(tmp_path / "unlabeled_1-2_seed0.txt")) == sorted(
        open_source("cityscapes", trees["cityscapes"], tmp_path).split_ids("train")
    )
    assert not (trees["cityscapes"] / "splits").exists()
    assert default_splits_dir("ade20k", "/data/ade") == Path("splits/ade20k")
    assert default_splits_dir("folder", "/data/x") == Path("/data/x/splits")


def test_import_unimatch_and_plain_lists(trees, tmp_path: Path) -> None:
    city = open_source("cityscapes", trees["cityscapes"], tmp_path / "c")
    unimatch = tmp_path / "labeled.txt"
    unimatch.write_text(
        "leftImg8bit/train/bochum/bochum_000000_000001_leftImg8bit.png "
        "gtFine/train/bochum/bochum_000000_000001_gtFine_labelTrainIds.png\n"
        "leftImg8bit/train/aachen/aachen_000000_000002_leftImg8bit.png "
        "gtFine/train/aachen/aachen_000000_000002_gtFine_labelTrainIds.png\n\n"
    )
    labeled, unlabeled = import_split(city, unimatch, "2_unimatch")
    assert read_id_list(labeled) == ["train/aachen/aachen_000000_000002", "train/bochum/bochum_000000_000001"]
    assert len(read_id_list(unlabeled)) == 4 and labeled.parent == tmp_path / "c"

    voc = open_source("voc", trees["voc"], tmp_path / "v")
    u2pl = tmp_path / "u2pl.txt"
    u2pl.write_text("JPEGImages/2007_000001.jpg SegmentationClassAug/2007_000001.png\n")
    unl = tmp_path / "u2pl_unlabeled.txt"
    unl.write_text("2009_000001\n2009_000002.jpg\n")
    assert (
        main(
            [
                "split",
                "--dataset",
                "voc",
                "--data",
                str(trees["voc"]),
                "--splits-dir",
                str(tmp_path / "v"),
                "--import",
                str(u2pl),
                "--import-unlabeled",
                str(unl),
                "--name",
                "1_u2pl",
            ]
        )
        == 0
    )
    assert read_id_list(tmp_path / "v" / "labeled_1_u2pl.txt") == ["2007_000001"]
    assert read_id_list(tmp_path / "v" / "unlabeled_1_u2pl.txt") == ["2009_000001", "2009_000002"]

    ade = open_source("ade20k", trees["ade20k"], tmp_path / "a")
    plain = tmp_path / "ade.txt"
    plain.write_text("ADE_train_00000003.jpg\nADE_train_00000005.jpg\n")
    assert read_id_list(import_split(ade, plain, "2_official")[0]) == ["ADE_train_00000003", "ADE_train_00000005"]
    plain.write_text("ADE_val_00000001.jpg\n")
    with pytest.raises(DataError, match="not in the ade20k 'train' split.*ADE_val_00000001"):
        import_split(ade, plain, "bad")
    unl.write_text("2008_000000\n")
    with pytest.raises(DataError, match="val images.*2008_000000"):
        import_split(voc, u2pl, "bad", unlabeled_file=unl)


def test_import_needs_a_name(trees, tmp_path: Path, capsys) -> None:
    listed = tmp_path / "l.txt"
    listed.write_text("2007_000001\n")
    assert (
        main(
            [
                "split",
                "--dataset",
                "voc",
                "--data",
                str(trees["voc"]),
                "--splits-dir",
                str(tmp_path),
                "--import",
                str(listed),
            ]
        )
        == 2
    )
    assert "--name" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["voc", "voc_aug", "cityscapes", "ade20k"])
def test_short_training_run_on_each_tree(trees, tmp_path: Path, dataset: str, capsys) -> None:
    torch.manual_seed(0)
    root = trees["voc" if dataset == "voc_aug" else dataset]
    source = open_source(dataset, root, tmp_path / "splits")
    labeled, unlabeled = split_source(source, 2, seed=0)
    data = {"root": str(root), "labeled": labeled.stem, "unlabeled": unlabeled.stem}
    method = "dual_teacher" if dataset == "voc" else "supervised"
    overrides = tiny_overrides(
        data,
        tmp_path / "run",
        method,
        data__dataset=dataset,
        data__splits_dir=str(tmp_path / "splits"),
        data__crop_size=32,
        data__val_batch_size=1,
        train__epochs=1,
        train__iters_per_epoch=2,
        train__batch_size=2,
        train__probe_images=2,
    )
    record = train(load_config(None, overrides), progress=False)
    assert 0.0 <= record["student/miou"] <= 1.0
    expected_classes = {"voc": 21, "voc_aug": 21, "cityscapes": 19, "ade20k": 150}[dataset]
    assert len(record["student/iou"]) == expected_classes
    if dataset == "cityscapes":  # the CLI scores the checkpoint on the same val set, by the same rules
        capsys.readouterr()
        assert main(["eval", str(tmp_path / "run" / "last.safetensors"), "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["dataset"] == "cityscapes" and result["mode"] == "whole"
        assert result["miou"] == pytest.approx(record["student/miou"], abs=1e-9)


def test_epochs_over_the_unlabeled_set(trees, tmp_path: Path) -> None:
    source = open_source("voc", trees["voc"], tmp_path / "splits")
    labeled, unlabeled = split_source(source, 2, seed=0)
    data = {"root": str(trees["voc"]), "labeled": labeled.stem, "unlabeled": unlabeled.stem}
    overrides = tiny_overrides(
        data,
        tmp_path / "run",
        "supervised",
        data__dataset="voc",
        data__splits_dir=str(tmp_path / "splits"),
        train__iters_per_epoch="null",
        train__batch_size=2,
        train__unlabeled_batch_size=4,
    )
    over_labeled = Trainer(load_config(None, overrides), resume=False, progress=False)
    over_unlabeled = Trainer(
        load_config(None, [*overrides, "train.epoch_over=unlabeled"]), resume=False, progress=False
    )
    assert over_labeled.schedule.iters_per_epoch == 2 // 2
    assert over_unlabeled.schedule.iters_per_epoch == 10 // 4


def test_folder_entries_name_ids(tmp_path: Path) -> None:
    folder = open_source("folder", tmp_path)
    assert folder.splits_dir == tmp_path / "splits"
    assert [folder.entry_id(e) for e in ("images/a/b.jpg", "c.png", "d")] == ["a/b", "c", "d"]
