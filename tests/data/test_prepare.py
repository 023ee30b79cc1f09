"""``dualteacher init``: a folder of images and some masks becomes a trainable dataset, without
touching the user's files; and ``split`` refuses budgets drawn from images without a mask."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in ("images", "masks")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


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
    assert train == sorted({f"img{k:02d}" for k in range(10)} - set(val))
    assert lines(root / "splits" / "labeled_masked.txt") == [i for i in masked if i not in val]
    assert lines(root / "splits" / "unlabeled_masked.txt") == [f"img{k:02d}" for k in range(6, 10)]
    assert [w.status for w in report.files] == ["wrote"] * 5
    text = report.format()
    assert "the masks hold the class values 0, 1, 2 and 255 (ignore: not trained on) in 1 mask(s)" in text
    assert "val holds 1 image(s): its mIoU, and so the choice of best.safetensors, rests on them alone" in text
    assert text.endswith(
        f"next: dualteacher check-data --data {root}\n"
        f"then: dualteacher train --data {root} --method mean_teacher --minutes 10"
    )
    assert digest(root) == before and sorted(os.listdir(root)) == ["classes.txt", "images", "masks", "splits"]
    source = open_source("folder", root)
    assert own_splits(source, str(root), unlabeled=True)[:2] == ("labeled_masked", "unlabeled_masked")
    checked = check_data(
        source, {"labeled": "labeled_masked", "unlabeled": "unlabeled_masked", "val": "val"}, full=True
    )
    assert not checked.errors and not checked.warnings, checked.format()


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
    mine = list(lines(root / "splits" / "labeled_masked.txt"))[:2]
    val.write_text("".join(f"{i}\n" for i in mine))
    (root / "splits" / "train.txt").write_text(
        "".join(f"{i}\n" for i in sorted(set(lines(root / "splits" / "train.txt")) - set(mine) | set(drawn)))
    )
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
    assert next(w.status for w in prepare_folder(root).files) == "unchanged"  # no --classes: the file is kept
    with pytest.raises(
        DataError,
        match=r"already names other classes \(sky, square, bar\).*"
        rf"run: dualteacher init --data {root} --classes a b c --force$",
    ):
        prepare_folder(root, classes=["a", "b", "c"])
    assert prepare_folder(root, classes=["a", "b", "c"], force=True).files[0].status == "rewrote"
    with pytest.raises(DataError, match=r"masks/img0\d\.png holds the value 2 but --classes names 2 classes"):
        prepare_folder(root, classes=["a", "b"], force=True)


def test_a_stray_value_names_the_mask_that_holds_it(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    mask = np.array(Image.open(root / "masks" / "img03.png"))
    mask[0, 0] = 7  # a typo: classes 3..6 appear from nowhere
    Image.fromarray(mask).save(root / "masks" / "img03.png")
    text = prepare_folder(root).format()
    assert lines(root / "classes.txt")[3:] == [f"class_{v}" for v in range(3, 8)]
    assert "no mask holds the class(es) 3 (class_3), 4 (class_4), 5 (class_5), 6 (class_6)" in text
    assert "the value(s) 7 above that gap are in masks/img03.png: if a mask holds a wrong value, correct it" in text


def test_binary_masks_saved_as_255_are_read_through_the_map_init_records(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "fg", foreground=255, disc=0)
    before = digest(root)
    report = prepare_folder(root)
    assert json.loads((root / "mask_values.json").read_text()) == {"0": 0, "255": 1}
    assert lines(root / "classes.txt") == ["background", "foreground"]
    assert digest(root) == before
    assert sorted(os.listdir(root)) == ["classes.txt", "images", "mask_values.json", "masks", "splits"]
    text = report.format()
    assert (
        f"wrote      {root}/mask_values.json: 0 -> 0 (background), 255 -> 1 (foreground): binary masks saved as "
        "0/255" in text
    )
    assert (
        "binary masks: 6 mask(s) store the foreground as 255; mask_values.json maps 255 to class 1 (foreground)" in text
    )
    assert "no value is ignored" in text and 'write {"255": 255}' not in text
    files = [root / "classes.txt", root / "mask_values.json", *(root / "splits").iterdir()]
    written = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    assert [w.status for w in prepare_folder(root).files] == ["unchanged"] * 6  # idempotent
    assert {w.path.name: w.status for w in prepare_folder(root, force=True).files}["mask_values.json"] == "unchanged"
    assert {p: p.read_bytes() for p in written} == {p: b for p, (b, _) in written.items()}
    assert (root / "mask_values.json").stat().st_mtime_ns == written[root / "mask_values.json"][1]
    checked = check_data(
        open_source("folder", root),
        {"labeled": "labeled_masked", "unlabeled": "unlabeled_masked", "val": "val"},
        full=False,
    )
    assert not checked.errors and not checked.warnings, checked.format()
    assert checked.class_pixels is not None
    assert checked.class_pixels["foreground"] == sum(
        int((np.asarray(Image.open(root / "masks" / f"{i}.png")) == 255).sum())
        for i in lines(root / "splits" / "labeled_masked.txt")
    )
    assert "mask values read through mask_values.json: 0 -> 0 (background), 255 -> 1 (foreground)" in checked.format()
    assert checked.as_dict()["mask_values"] == {"file": str(root / "mask_values.json"), "map": {"0": 0, "255": 1}}
    assert digest(root) == before


def _resave_as_0_1(root: Path, *sample_ids: str) -> None:
    """Save the masks of ``sample_ids`` as 0/1, as a second annotation tool would."""
    for sample_id in sample_ids:
        path = root / "masks" / f"{sample_id}.png"
        Image.fromarray((np.asarray(Image.open(path)) == 255).astype(np.uint8)).save(path)


def test_masks_of_two_tools_0_255_and_0_1_are_read_alike_but_255_beside_1_stays_ignore(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mixed", foreground=255, disc=0)
    _resave_as_0_1(root, "img01", "img03")
    text = prepare_folder(root).format()
    assert json.loads((root / "mask_values.json").read_text()) == {"0": 0, "255": 1}
    assert "4 mask(s) store the foreground as 255 and 2 as 1 (masks of two tools?)" in text
    assert (
        f'if 255 marks unlabelled pixels in your masks instead, write {{"255": 255}} to {root}/mask_values.json' in text
    )
    dataset = open_source("folder", root).dataset(["img00", "img01"], labeled=True)
    assert [sorted(np.unique(dataset[k]["mask"].numpy()).tolist()) for k in range(2)] == [[0, 1], [0, 1]]

    border = own_folder(tmp_path / "border", foreground=1, disc=0)  # img00: class 1 and 255 (ignore) rows
    text = prepare_folder(border).format()
    assert not (border / "mask_values.json").exists() and lines(border / "classes.txt") == ["background", "class_1"]
    assert "the masks hold the class values 0, 1 and 255 (ignore: not trained on) in 1 mask(s)" in text


def test_a_map_of_the_users_own_is_kept_and_read_before_the_classes_are_counted(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mixed", foreground=255, disc=0)
    _resave_as_0_1(root, "img01", "img03")
    (root / "mask_values.json").write_text('{"255": 255}')  # here 255 marks unlabelled pixels
    report = prepare_folder(root)
    assert (root / "mask_values.json").read_text() == '{"255": 255}'
    assert {w.path.name: w.status for w in report.files}["mask_values.json"] == "kept"
    text = report.format()
    assert "mask_values.json: 255 -> ignore (your map, applied by every command that reads the masks)" in text
    assert "the masks hold the class values 0, 1 and 255 (ignore: not trained on) in 4 mask(s)" in text
    assert lines(root / "classes.txt") == ["background", "class_1"]
    refused = check_data(open_source("folder", root), {"labeled": "labeled_masked", "val": "val"}, full=False)
    assert "mask-binary" not in {f.kind for f in refused.findings}  # the user said what 255 is
    (root / "mask_values.json").write_text('{"255": "one"}')
    with pytest.raises(
        DataError,
        match=r"mask_values\.json: '255' maps to 'one', not a class index.*or delete it for "
        rf"init to write it again, then run: dualteacher init --data {root}$",
    ):
        prepare_folder(root)


def test_an_indexed_copy_of_binary_masks_holds_class_indices(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "fg", foreground=255, disc=0)
    before = digest(root)
    copy = tmp_path / "fg_indexed"
    report = prepare_folder(root, indexed_copy=copy)
    assert digest(root) == before and sorted(os.listdir(root)) == ["images", "masks"]
    assert lines(copy / "classes.txt") == ["background", "foreground"] and not (copy / "mask_values.json").exists()
    for name in os.listdir(root / "masks"):
        stored = np.asarray(Image.open(root / "masks" / name))
        converted = np.asarray(Image.open(copy / "masks" / name))
        assert set(np.unique(converted)) <= {0, 1} and np.array_equal(converted, (stored == 255).astype(np.uint8))
    image = next((root / "images").iterdir())
    assert os.path.samefile(image, copy / "images" / image.name)  # linked, not duplicated
    assert f"indexed copy of {root}: {copy}" in report.format() and "foreground 255 -> 1" in report.format()
    again = prepare_folder(root, indexed_copy=copy).copy
    assert again is not None and [w.status for w in again.files] == ["unchanged"] * 5
    assert digest(root) == before
    _resave_as_0_1(root, "img01")
    (root / "mask_values.json").write_text('{"255": 255}')  # the user's: 255 marks unlabelled pixels
    kept = tmp_path / "kept_indexed"
    report = prepare_folder(root, indexed_copy=kept)
    assert f"through {root / 'mask_values.json'}: 255 -> ignore" in report.format()
    assert np.array_equal(
        np.asarray(Image.open(kept / "masks" / "img00.png")), np.asarray(Image.open(root / "masks" / "img00.png"))
    )  # 255 stays ignore
    assert json.loads((kept / "mask_values.json").read_text()) == {"255": 255}  # and the copy says so
    assert lines(kept / "classes.txt") == ["background", "class_1"]


def test_colour_masks_are_refused_then_copied_one_class_per_colour(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "rgb")
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 128, 255]], np.uint8)
    for path in (root / "masks").iterdir():
        index = np.asarray(Image.open(path)).copy()
        index[index == 255] = 0
        Image.fromarray(palette[index]).save(path)
    with pytest.raises(
        DataError,
        match=r"colour images .* 3 colours, #000000, #0080ff, #ff0000.*no setting reads "
        rf"colours.*run: dualteacher init --data {root} --indexed-copy {root}_indexed$",
    ):
        prepare_folder(root)
    report = prepare_folder(root, indexed_copy=tmp_path / "copy")
    assert lines(tmp_path / "copy" / "classes.txt") == ["background", "color_0080ff", "color_ff0000"]
    assert "classes by colour: 0 = #000000, 1 = #0080ff, 2 = #ff0000" in report.format()
    original = np.asarray(Image.open(root / "masks" / "img01.png"))
    converted = np.asarray(Image.open(tmp_path / "copy" / "masks" / "img01.png"))
    assert np.array_equal(converted == 2, (original == [255, 0, 0]).all(axis=2))


@pytest.mark.parametrize(
    "damage, match",
    [
        (
            lambda r: Image.new("L", (SIZE, SIZE)).save(r / "masks" / "ghost.png"),
            r"1 mask\(s\) match no image \(masks/ghost\.png\)",
        ),
        (
            lambda r: Image.new("L", (SIZE + 1, SIZE)).save(r / "masks" / "img01.png"),
            r"masks/img01\.png is 49x48 but images/img01\.jpg is 48x48",
        ),
        (
            lambda r: (r / "images" / "img03.jpg").rename(r / "images" / "img03.JPG"),
            r"upper-case extension \(images/img03\.JPG\)",
        ),
        (
            lambda r: Image.new("L", (SIZE, SIZE)).save(r / "masks" / "img02.jpg"),
            r"not saved as \.png \(masks/img02\.jpg\)",
        ),
        (lambda r: [p.unlink() for p in (r / "masks").iterdir()], r"no mask in .*masks"),
        (
            lambda r: [p.unlink() for p in (r / "masks").iterdir() if p.name > "img01.png"],
            r"only 2 image\(s\) have a mask",
        ),
        (lambda r: [p.unlink() for p in (r / "images").iterdir()], r"no image in .*images"),
        (
            lambda r: Image.new("LA", (SIZE, SIZE)).save(r / "masks" / "img01.png"),
            r"hold no class indices \(masks/img01\.png \(LA\)\)",
        ),
    ],
)
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
    with pytest.raises(
        DataError,
        match=r"val\.txt lists 1 id\(s\) without a mask \(img08\).*"
        rf"run: dualteacher init --data {root} --force$",
    ):
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
        f"run: dualteacher split --data {root} --labeled masked"
    )
    assert main(["check-data", "--data", str(root), "--workers", "0", "--no-cache"]) == 0
    assert (
        "labeled 'labeled_masked' (5 ids), unlabeled 'unlabeled_masked' (4 ids), val 'val' (1 ids)"
        in capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        main(["init", "--data", str(root), "--val", "1.5"])


def test_check_data_names_the_files_added_after_init_that_training_would_not_use(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    prepare_folder(root, seed=3)
    splits = {"labeled": "labeled_masked", "unlabeled": "unlabeled_masked", "val": "val"}
    assert not check_data(open_source("folder", root), splits, full=False).findings
    shutil.copy(root / "masks" / "img00.png", root / "masks" / "img07.png")  # an annotation of an unlabelled image
    shutil.copy(root / "masks" / "img00.png", root / "masks" / "ghost.png")  # a mask of no image
    (root / "images" / "more").mkdir()
    shutil.copy(root / "images" / "img00.png", root / "images" / "more" / "img10.png")  # an image of no list
    before = digest(root)
    report = check_data(open_source("folder", root), splits, full=False)
    found = {(f.severity, f.kind, Path(f.path_or_id).relative_to(root).as_posix()) for f in report.findings}
    assert found == {
        ("warning", "mask-unused", "masks/img07.png"),
        ("warning", "mask-orphan", "masks/ghost.png"),
        ("info", "image-unlisted", "images/more/img10.png"),
    }, report.format()
    unused = next(f for f in report.findings if f.kind == "mask-unused").message
    assert "listed as unlabelled in 'unlabeled_masked'" in unused
    assert unused.endswith(f"run: dualteacher split --data {root} --labeled masked")
    unlisted = next(f for f in report.findings if f.kind == "image-unlisted").message
    assert unlisted.endswith(
        f"add the line more/img10 to {root / 'splits' / 'train.txt'}, then draw the labelled lists again, "
        f"e.g. dualteacher split --data {root} --labeled masked"
    )
    assert not report.errors and digest(root) == before  # nothing stops training, nothing is touched
    assert main(["split", "--data", str(root), "--labeled", "masked"]) == 0
    relabelled = check_data(open_source("folder", root), splits, full=False)
    assert "img07" in lines(root / "splits" / "labeled_masked.txt")
    assert {f.kind for f in relabelled.findings} == {"mask-orphan", "image-unlisted"}
    masked = lines(root / "splits" / "labeled_masked.txt")  # a budget of two: the other masks held out on purpose
    (root / "splits" / "labeled_two.txt").write_text("\n".join(masked[:2]) + "\n")
    (root / "splits" / "unlabeled_two.txt").write_text("\n".join(lines(root / "splits" / "train.txt")[2:]) + "\n")
    benchmark = {"labeled": "labeled_two", "unlabeled": "unlabeled_two", "val": "val"}
    assert {f.kind for f in check_data(open_source("folder", root), benchmark, full=False).findings} == {
        "mask-orphan",
        "image-unlisted",
    }
    (root / "splits" / "test.txt").write_text("more/img10.png\n")  # a held-out list, named by file: not unlisted
    (root / "splits" / "notes.txt").write_bytes(b"\xff\xfe\x00broken")  # an unreadable list no check reads
    assert {f.kind for f in check_data(open_source("folder", root), splits, full=False).findings} == {"mask-orphan"}


def test_check_data_names_misnamed_files_and_its_fixes_work(tmp_path: Path) -> None:
    root = own_folder(tmp_path / "mine")
    prepare_folder(root, seed=3)
    splits = {"labeled": "labeled_masked", "unlabeled": "unlabeled_masked", "val": "val"}
    shutil.copy(root / "images" / "img00.png", root / "images" / "new.PNG")  # found by no reader
    shutil.copy(root / "masks" / "img00.png", root / "masks" / "new.png")  # its image exists, misnamed
    Image.open(root / "masks" / "img01.png").save(root / "masks" / "img08.jpg")  # a lossy mask
    shutil.copy(root / "images" / "img00.png", root / "images" / "img10.png")  # unlisted
    train = root / "splits" / "train.txt"
    (root / "splits" / "extra.txt").write_text("img01\nimg01\n")  # a repeated id does not hide a list
    shutil.copy(root / "masks" / "img08.jpg", root / "masks" / "img00.jpg")  # a JPEG copy beside the PNG read
    (root / "images" / "more").mkdir()
    shutil.copy(root / "images" / "img00.png", root / "images" / "more" / "pic.png")
    shutil.copy(root / "masks" / "img00.png", root / "masks" / "pic.png")  # its mask, saved one folder up
    report = check_data(open_source("folder", root), splits, full=False)
    found = {(f.kind, Path(f.path_or_id).relative_to(root).as_posix()): f.message for f in report.findings}
    assert set(found) == {  # no mask-orphan for masks/new.png: its image is there, in another case
        ("extension-case", "images/new.PNG"),
        ("mask-not-png", "masks/img08.jpg"),
        ("mask-not-png", "masks/img00.jpg"),
        ("mask-orphan", "masks/pic.png"),
        ("image-unlisted", "images/img10.png"),
        ("image-unlisted", "images/more/pic.png"),
    }, report.format()
    assert found[("extension-case", "images/new.PNG")].endswith("rename it to new.png")
    assert (
        "export the mask again from the annotation tool as masks/img08.png"
        in found[("mask-not-png", "masks/img08.jpg")]
    )
    assert found[("mask-not-png", "masks/img00.jpg")].endswith("which is the one read: remove this copy")
    assert found[("mask-orphan", "masks/pic.png")].endswith(
        "if it is the mask of images/more/pic.png, move it to masks/more/pic.png"
    )
    (root / "images" / "new.PNG").rename(root / "images" / "new.png")  # the fixes, as the messages say
    (root / "masks" / "img08.jpg").unlink()
    (root / "masks" / "img00.jpg").unlink()
    (root / "masks" / "more").mkdir()
    (root / "masks" / "pic.png").rename(root / "masks" / "more" / "pic.png")
    train.write_text(train.read_text() + "img10\nnew\nmore/pic\n")
    assert main(["split", "--data", str(root), "--labeled", "masked"]) == 0
    assert not check_data(open_source("folder", root), splits, full=False).findings
    other = tmp_path / "lists"  # lists kept outside the dataset: the command names them
    shutil.copytree(root / "splits", other)
    shutil.copy(root / "masks" / "img00.png", root / "masks" / "img07.png")
    report = check_data(open_source("folder", root, other), splits, full=False)
    [unused] = [f.message for f in report.findings if f.kind == "mask-unused"]
    assert unused.endswith(f"run: dualteacher split --data {root} --splits-dir {other} --labeled masked")


def test_init_says_how_to_enlarge_a_small_val() -> None:
    from dualteacher.data.prepare import _few_val_note

    assert "dualteacher init --data d --val 0.25 --force holds out 5 of the 20" in _few_val_note(4, 20, 0.2, None, "d")
    assert "--val 0.5 --force holds out 5 of the 10" in _few_val_note(2, 10, 0.2, None, "d")  # 0.45 rounds to 4
    assert _few_val_note(1, 4, 0.2, None, "d").endswith(
        "with 7 or more images with a mask, a larger --val can steady it"
    )
    assert _few_val_note(1, 9, 0.2, Path("v.txt"), "d").endswith("adding images with a mask to your v.txt steadies it")


def test_check_data_refuses_unmapped_binary_masks_until_init_records_the_map(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "defects", ["background", "defect"], foreground=255, disc=0)
    splits = {"labeled": "labeled", "unlabeled": "unlabeled", "val": "val"}
    refused = check_data(open_source("folder", root), splits, full=False)
    assert [f.kind for f in refused.errors] == ["mask-binary", "mask-binary"]
    assert "no labelled mask holds class 1 ('defect') but 4 of 4 hold 255" in refused.errors[0].message
    assert refused.errors[0].message.endswith(
        f"255 is class 1 in mask_values.json (every command then reads the masks "
        f"so), run: dualteacher init --data {root}"
    )
    _resave_as_0_1(root, "train001", "val001")  # two tools: still refused, with the other reading named
    mixed = check_data(open_source("folder", root), splits, full=False)
    assert [f.kind for f in mixed.errors] == ["mask-binary", "mask-binary"]
    assert "3 of the 4 labelled masks hold 0 and 255 but never 1, and 1 hold 1 but never 255" in mixed.errors[0].message
    assert f'write {{"255": 255}} to {root / "mask_values.json"}' in mixed.errors[0].message
    report = prepare_folder(root)
    assert lines(root / "classes.txt") == ["background", "defect"]  # the dataset's own names
    assert lines(root / "splits" / "val.txt") == [f"val{i:03d}" for i in range(4)]  # the user's lists are kept
    assert "mask_values.json: 0 -> 0 (background), 255 -> 1 (defect)" in report.format()
    passed = check_data(open_source("folder", root), splits, full=False)
    assert not passed.errors and passed.class_images is not None and passed.class_images["defect"] == 4, passed.format()
