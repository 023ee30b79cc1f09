"""``dualteacher init``: a folder of images and some masks becomes a trainable dataset, without
touching the user's files; and ``split`` refuses budgets drawn from images without a mask."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualteacher.cli import main
from dualteacher.data.check import check_data
from dualteacher.data.core import DataError
from dualteacher.data.prepare import draw_val, own_splits, prepare_folder
from dualteacher.data.registry import open_source
from scenes import SIZE, make_scenes, own_folder

def digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under images/ and masks/ (the user's files)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in ("images", "masks") for p in sorted((root / folder).rglob("*")) if p.is_file()}


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_init_writes_classes_and_lists_from_the_masks_and_changes_no_user_file(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    before = digest(root)
    report = prepare_folder(root, seed=3)
    assert lines(root / "classes.txt") == ["background", "class_1", "class_2"]
    val, train = lines(root / "splits" / "val.txt"), lines(root / "splits" / "train.txt")
    masked = [f"img{k:02d}" for k in range(6)]
    assert val == draw_val(masked, 0.2, 3) and len(val) == 1 and set(val) <= set(masked)  # max(1, round(1.2))
    assert train == sorted(set(f"img{k:02d}" for k in range(10)) - set(val))
    assert lines(root / "splits" / "labeled_masked.txt") == [i for i in masked if i not in val]
    assert lines(root / "splits" / "unlabeled_masked.txt") == [f"img{k:02d}" for k in range(6, 10)]
    assert [w.status for w in report.files] == ["wrote"] * 5
    text = report.format()
    assert "the masks hold the class values 0, 1, 2 and 255 (ignore: not trained on) in 1 mask(s)" in text
    assert text.endswith(f"next: dualteacher check-data --data {root}\n"
                         f"then: dualteacher train --data {root} --method dual_teacher --minutes 10")
    assert digest(root) == before and sorted(os.listdir(root)) == ["classes.txt", "images", "masks", "splits"]
    source = open_source("folder", root)
    assert own_splits(source, str(root), unlabeled=True)[:2] == ("labeled_masked", "unlabeled_masked")
    report = check_data(source, {"labeled": "labeled_masked", "unlabeled": "unlabeled_masked", "val": "val"}, full=True)
    assert not report.errors and not report.warnings, report.format()


def test_a_second_call_changes_nothing_and_force_redraws(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine", count=12, masked=11)
    prepare_folder(root)
    written = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in [root / "classes.txt", *(root / "splits").iterdir()]}
    again = prepare_folder(root)
    assert [w.status for w in again.files] == ["unchanged"] * 5
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in written} == written
    val = root / "splits" / "val.txt"
    drawn = lines(val)
    assert len(drawn) == 2  # round(0.2 * 11)
    mine = [i for i in lines(root / "splits" / "labeled_masked.txt")][:2]
    val.write_text("".join(f"{i}\n" for i in mine))
    (root / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in sorted(set(lines(root / "splits" / "train.txt")) - set(mine) | set(drawn))))
    kept = prepare_folder(root)  # the user's own lists are used as they are
    assert {w.path.name: w.status for w in kept.files}["val.txt"] == "kept" and lines(val) == mine
    assert "your list; dualteacher init --data" in kept.format()
    assert {w.path.name: w.status for w in kept.files}["labeled_masked.txt"] == "kept"  # stale, not overwritten
    assert f"dualteacher split --data {root} --labeled masked writes both lists again" in kept.format()
    forced = prepare_folder(root, force=True)
    assert lines(val) == drawn and {w.path.name: w.status for w in forced.files}["val.txt"] == "rewrote"
    assert {w.path.name: w.status for w in forced.files}["classes.txt"] == "unchanged"  # names are never guessed over


def test_class_names_given_or_kept(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    prepare_folder(root, classes=["sky", "square", "bar"])
    assert lines(root / "classes.txt") == ["sky", "square", "bar"]
    assert [w.status for w in prepare_folder(root).files][0] == "unchanged"  # no --classes: the file is kept
    with pytest.raises(DataError, match=r"already names other classes \(sky, square, bar\).*"
                                        rf"run: dualteacher init --data {root} --classes a b c --force$"):
        prepare_folder(root, classes=["a", "b", "c"])
    assert prepare_folder(root, classes=["a", "b", "c"], force=True).files[0].status == "rewrote"
    with pytest.raises(DataError, match=r"masks/img0\d\.png holds the value 2 but --classes names 2 classes"):
        prepare_folder(root, classes=["a", "b"], force=True)


def test_binary_masks_saved_as_255_are_refused_then_copied_as_indices(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "fg", foreground=255, disc=0)
    before = digest(root)
    with pytest.raises(DataError) as caught:
        prepare_folder(root)
    message = str(caught.value)
    assert "only the values 0 and 255" in message and "data.ignore_index=255" in message
    assert message.endswith(f"run: dualteacher init --data {root} --indexed-copy {root}_indexed")
    assert sorted(os.listdir(root)) == ["images", "masks"]  # nothing written
    copy = tmp_path / "fg_indexed"
    report = prepare_folder(root, indexed_copy=copy)
    assert digest(root) == before and sorted(os.listdir(root)) == ["images", "masks"]
    assert lines(copy / "classes.txt") == ["background", "foreground"]
    for name in os.listdir(root / "masks"):
        stored = np.asarray(Image.open(root / "masks" / name))
        converted = np.asarray(Image.open(copy / "masks" / name))
        assert set(np.unique(converted)) <= {0, 1} and np.array_equal(converted, (stored == 255).astype(np.uint8))
    image = next((root / "images").iterdir())
    assert os.path.samefile(image, copy / "images" / image.name)  # linked, not duplicated
    assert f"indexed copy of {root}: {copy}" in report.format() and "foreground 255 -> 1" in report.format()
    assert report.format().endswith(f"then: dualteacher train --data {copy} --method dual_teacher --minutes 10")
    source = open_source("folder", copy)
    assert not check_data(source, {"labeled": "labeled_masked", "val": "val"}, full=False).errors
    assert [w.status for w in prepare_folder(root, indexed_copy=copy).copy.files] == ["unchanged"] * 5
    assert digest(root) == before


def test_colour_masks_are_refused_then_copied_one_class_per_colour(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "rgb")
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]], np.uint8)
    for path in (root / "masks").iterdir():
        index = np.asarray(Image.open(path)).copy()
        index[index == 255] = 0
        Image.fromarray(palette[index]).save(path)
    with pytest.raises(DataError, match=r"colour images .* 3 colours, #000000, #0080ff, #ff0000.*no setting reads "
                                        rf"colours.*run: dualteacher init --data {root} --indexed-copy {root}_indexed$"):
        prepare_folder(root)
    report = prepare_folder(root, indexed_copy=tmp_path / "copy")
    assert lines(tmp_path / "copy" / "classes.txt") == ["background", "color_0080ff", "color_ff0000"]
    assert "classes by colour: 0 = #000000, 1 = #0080ff, 2 = #ff0000" in report.format()
    original = np.asarray(Image.open(root / "masks" / "img01.png"))
    converted = np.asarray(Image.open(tmp_path / "copy" / "masks" / "img01.png"))
    assert np.array_equal(converted == 2, (original == [255, 0, 0]).all(axis=2))


@pytest.mark.parametrize("damage, match", [
    (lambda r: Image.new("L", (SIZE, SIZE)).save(r / "masks" / "ghost.png"), r"1 mask\(s\) match no image \(masks/ghost\.png\)"),
    (lambda r: Image.new("L", (SIZE + 1, SIZE)).save(r / "masks" / "img01.png"),
     r"masks/img01\.png is 49x48 but images/img01\.jpg is 48x48"),
    (lambda r: (r / "images" / "img03.jpg").rename(r / "images" / "img03.JPG"), r"upper-case extension \(images/img03\.JPG\)"),
    (lambda r: Image.new("L", (SIZE, SIZE)).save(r / "masks" / "img02.jpg"), r"not saved as \.png \(masks/img02\.jpg\)"),
    (lambda r: [p.unlink() for p in (r / "masks").iterdir()], r"no mask in .*masks"),
    (lambda r: [p.unlink() for p in (r / "masks").iterdir() if p.name > "img01.png"], r"only 2 image\(s\) have a mask"),
    (lambda r: [p.unlink() for p in (r / "images").iterdir()], r"no image in .*images"),
    (lambda r: Image.new("LA", (SIZE, SIZE)).save(r / "masks" / "img01.png"), r"hold no class indices \(masks/img01\.png \(LA\)\)"),
])
def test_each_error_names_the_files_and_ends_with_the_command(tmp_path: Path, damage, match: str) -> None:
    root = own_folder(tmp_path / "mine")
    damage(root)
    with pytest.raises(DataError, match=match) as caught:
        prepare_folder(root)
    assert str(caught.value).endswith(f"run: dualteacher init --data {root}")
    assert not (root / "classes.txt").exists() and not (root / "splits").exists()


def test_a_users_val_list_must_hold_masked_images(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("img00\nimg01\nimg02\n")
    (root / "splits" / "val.txt").write_text("img08\n")
    with pytest.raises(DataError, match=r"val\.txt lists 1 id\(s\) without a mask \(img08\).*"
                                        rf"run: dualteacher init --data {root} --force$"):
        prepare_folder(root)
    prepare_folder(root, force=True)
    assert set(lines(root / "splits" / "val.txt")) <= {f"img{k:02d}" for k in range(6)}


def test_the_cli_prints_what_it_wrote_and_split_refuses_unmasked_budgets(tmp_path: Path, capsys) -> None:
    root = own_folder(tmp_path / "mine")
    assert main(["split", "--data", str(root), "--labeled", "2"]) == 2
    assert not (root / "splits").exists()
    assert main(["init", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"wrote      {root}/splits/labeled_masked.txt: the 5 train images with a mask" in out
    assert main(["split", "--data", str(root), "--labeled", "2"]) == 2
    err = capsys.readouterr().err
    assert "4 of the 9 ids of the 'train' split" in err and err.rstrip().endswith(
        f"run: dualteacher split --data {root} --labeled masked")
    assert main(["check-data", "--data", str(root), "--workers", "0", "--no-cache"]) == 0
    assert "labeled 'labeled_masked' (5 ids), unlabeled 'unlabeled_masked' (4 ids), val 'val' (1 ids)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["init", "--data", str(root), "--val", "1.5"])


def test_the_copy_fixes_a_laid_out_binary_dataset_that_check_data_refused(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "defects", ["background", "defect"], foreground=255, disc=0)
    source = open_source("folder", root)
    splits = {"labeled": "labeled", "unlabeled": "unlabeled", "val": "val"}
    refused = check_data(source, splits, full=False)
    assert [f.kind for f in refused.errors] == ["mask-binary", "mask-binary"]
    assert refused.errors[0].message.endswith(f"run: dualteacher init --data {root} --indexed-copy {root}_indexed")
    copy = tmp_path / "defects_indexed"
    report = prepare_folder(root, indexed_copy=copy)
    assert lines(copy / "classes.txt") == ["background", "defect"]  # the dataset's own names
    assert lines(copy / "splits" / "val.txt") == lines(root / "splits" / "val.txt")  # the user's lists are kept
    assert lines(copy / "splits" / "train.txt") == [f"train{i:03d}" for i in range(12)]  # the rest, none of val
    assert "every train image has a mask" in report.format()
    assert not check_data(open_source("folder", copy), splits, full=False).errors
