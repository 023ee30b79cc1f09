"""Labelled/unlabelled splits: nesting across budgets, sizes, parsing, files on disk."""

from __future__ import annotations

import random
import types
from pathlib import Path
from typing import cast

import pytest

from dualteacher.data.core import DataError
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import masked_ids, split_source
from dualteacher.data.splits import budget_tag, make_split, parse_labeled

IDS = [f"img_{i:04d}" for i in range(2975)]


def test_fractions_are_nested_disjoint_and_cover_the_pool() -> None:
    sets = {}
    for frac in (1 / 16, 1 / 8, 1 / 4, 1 / 2):
        labeled, unlabeled = make_split(IDS, frac, seed=7)
        assert not set(labeled) & set(unlabeled)
        assert sorted(labeled + unlabeled) == IDS
        assert labeled == sorted(labeled) and unlabeled == sorted(unlabeled)
        sets[frac] = set(labeled)
    assert [len(sets[f]) for f in (1 / 16, 1 / 8, 1 / 4, 1 / 2)] == [186, 372, 744, 1488]
    assert sets[1 / 16] < sets[1 / 8] < sets[1 / 4] < sets[1 / 2]
    assert set(make_split(IDS, 92, seed=7)[0]) < sets[1 / 16]


def test_split_depends_on_seed_only() -> None:
    shuffled = IDS[:]
    random.Random(0).shuffle(shuffled)
    assert make_split(shuffled, 0.125, seed=3) == make_split(IDS, 0.125, seed=3)
    assert make_split(IDS, 0.125, seed=3) != make_split(IDS, 0.125, seed=4)
    assert len(make_split(IDS[:10], 0.1, seed=0)[0]) == 1
    assert make_split(IDS[:10], 1.0, seed=0) == (IDS[:10], [])


@pytest.mark.parametrize(
    ("budget", "message"),
    [(0, "at least 1"), (11, "only 10"), (1.5, r"\(0, 1\]"), (0.0, r"\(0, 1\]"), (True, "int count")],
)
def test_bad_budgets_are_refused(budget: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_split(IDS[:10], budget, seed=0)


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="img_0001"):
        make_split([*IDS[:5], "img_0001"], 2, seed=0)


def test_parse_labeled() -> None:
    assert parse_labeled("92") == 92 and isinstance(parse_labeled("92"), int)
    assert parse_labeled("0.125") == 0.125
    assert parse_labeled(" 1/16 ") == 0.0625
    assert parse_labeled("1") == 1 and isinstance(parse_labeled("1"), int)
    assert parse_labeled("1.0") == 1.0 and isinstance(parse_labeled("1.0"), float)
    for bad in ("0", "1/0", "16/1", "abc", "-3", "1.5", ""):
        with pytest.raises(ValueError):
            parse_labeled(bad)


def test_budget_tags() -> None:
    assert budget_tag(92) == "92"
    assert budget_tag(1 / 16) == "1-16" == budget_tag(0.0625)
    assert budget_tag(0.3) == "3-10"


def test_split_source_writes_files(tmp_path: Path) -> None:
    for folder in ("splits", "masks"):
        (tmp_path / folder).mkdir()
    (tmp_path / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in IDS[:100]))
    for sample_id in IDS[:100]:  # a budget is drawn only from images that have a mask
        (tmp_path / "masks" / f"{sample_id}.png").write_bytes(b"")
    source = open_source("folder", tmp_path)
    lab_path, unl_path = split_source(source, "1/16", seed=2)
    assert lab_path.name == "labeled_1-16_seed2.txt" and unl_path.name == "unlabeled_1-16_seed2.txt"
    labeled, unlabeled = make_split(IDS[:100], 1 / 16, seed=2)
    assert source.split_ids("labeled_1-16_seed2") == labeled and len(labeled) == 7
    assert source.split_ids("unlabeled_1-16_seed2") == unlabeled
    paths = split_source(source, 12, seed=2, name="mine")
    assert [p.name for p in paths] == ["labeled_mine.txt", "unlabeled_mine.txt"]
    assert len(source.split_ids("labeled_mine")) == 12
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == [
        "labeled_1-16_seed2.txt",
        "labeled_mine.txt",
        "train.txt",
        "unlabeled_1-16_seed2.txt",
        "unlabeled_mine.txt",
    ]


def test_masked_labels_the_images_that_have_a_mask(tmp_path: Path) -> None:
    for folder in ("images", "masks", "splits"):
        (tmp_path / folder).mkdir()
    ids = IDS[:10]
    (tmp_path / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    for k, sample_id in enumerate(ids):
        (tmp_path / "images" / f"{sample_id}.png").write_bytes(b"")
        if k % 3 == 0:
            (tmp_path / "masks" / f"{sample_id}.png").write_bytes(b"")
    source = open_source("folder", tmp_path)
    lab_path, unl_path = split_source(source, "masked", seed=5)
    assert (lab_path.name, unl_path.name) == ("labeled_masked.txt", "unlabeled_masked.txt")
    assert source.split_ids("labeled_masked") == [ids[0], ids[3], ids[6], ids[9]]
    assert source.split_ids("unlabeled_masked") == [i for k, i in enumerate(ids) if k % 3]
    for sample_id in ids:
        (tmp_path / "masks" / f"{sample_id}.png").write_bytes(b"")
    with pytest.raises(DataError, match="every one of the 10 images .* has a mask"):
        split_source(source, "masked", seed=0)
    for mask in (tmp_path / "masks").iterdir():
        mask.unlink()
    with pytest.raises(DataError, match="no image of the .* has a mask file"):
        split_source(source, "masked", seed=0)
    voc = types.SimpleNamespace(name="voc", root=tmp_path)  # the benchmark layouts are fully annotated
    with pytest.raises(DataError, match="the voc layout is fully annotated.*run: dualteacher split --dataset voc"):
        masked_ids(cast(DataSource, voc))


def test_a_budget_is_refused_when_some_pool_images_have_no_mask(tmp_path: Path) -> None:
    for folder in ("images", "masks", "splits"):
        (tmp_path / folder).mkdir()
    ids = IDS[:10]
    (tmp_path / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    for k, sample_id in enumerate(ids):
        (tmp_path / "images" / f"{sample_id}.png").write_bytes(b"")
        if k != 7:
            (tmp_path / "masks" / f"{sample_id}.png").write_bytes(b"")
    source = open_source("folder", tmp_path)
    for budget in (2, "2", "1/2", 1.0):  # refused whatever the draw would pick
        with pytest.raises(
            DataError,
            match=rf"1 of the 10 ids .* no mask file \(.*{ids[7]}\.png\).*"
            rf"run: dualteacher split --data {tmp_path} --labeled masked$",
        ):
            split_source(source, budget, seed=0)
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["train.txt"]  # nothing written
    (tmp_path / "masks" / f"{ids[7]}.png").write_bytes(b"")
    assert [p.name for p in split_source(source, 2, seed=0)] == ["labeled_2_seed0.txt", "unlabeled_2_seed0.txt"]
