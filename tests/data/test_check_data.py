"""check-data: every problem of a broken dataset is reported in one run, with its file name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from test_standard_datasets import make_ade, make_cityscapes

from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.data.check import Finding, Report, check_data, preflight
from dualteacher.data.registry import open_source

from conftest import tiny_overrides

SIZE = 16
NUM_CLASSES = 11
SPLITS = {"labeled": "labeled", "unlabeled": "empty", "val": "val"}

# (severity, kind, file or id) of every problem planted by ``broken`` below.
FAST = {
    ("error", "split-duplicate", "labeled.txt"),
    ("error", "split-overlap", "leak"),
    ("error", "split-empty", "empty.txt"),
    ("error", "image-unreadable", "corrupt.jpg"),
    ("error", "image-unreadable", "truncated.png"),
    ("error", "image-missing", "noimage.jpg"),
    ("error", "mask-missing", "nomask.png"),
    ("error", "mask-unreadable", "badmaskfile.png"),
    ("error", "size-mismatch", "mismatch.png"),
    ("error", "mask-colour", "rgbmask.png"),
    ("error", "image-mode", "float32.png"),
    ("warning", "image-rescaled", "gray16.png"),
    ("info", "image-converted", "gray8.png"),
    ("error", "mask-values", "badvalue.png"),
    ("warning", "class-absent", "c10"),
}


def _bands(values: list[int], height: int = SIZE) -> np.ndarray:
    return np.broadcast_to(np.array(values, np.uint8)[np.arange(SIZE) * len(values) // SIZE], (height, SIZE)).copy()


def _rgb(seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def _ids(root: Path, name: str, ids: list[str]) -> None:
    (root / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder-layout dataset with one of each problem (11 classes; class 10 never labelled)."""
    root = tmp_path_factory.mktemp("broken")
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir()
    (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(NUM_CLASSES)))
    images, masks = root / "images", root / "masks"
    labeled = [
        "good0",
        "good1",
        "truncated",
        "corrupt",
        "nomask",
        "mismatch",
        "badvalue",
        "rgbmask",
        "gray16",
        "float32",
        "gray8",
        "badmaskfile",
        "leak",
    ]
    for k, sample_id in enumerate([*labeled, "val0", "val1"]):
        _rgb(k).save(images / f"{sample_id}.png")
        Image.fromarray(_bands([*range(10), 255])).save(masks / f"{sample_id}.png")
    Image.fromarray(_bands([0, 10])).save(masks / "val0.png")  # class 10 only in val
    Image.fromarray(_bands([0, 1])).save(masks / "noimage.png")
    data = (images / "truncated.png").read_bytes()
    (images / "truncated.png").write_bytes(data[: len(data) // 2])
    (images / "corrupt.png").unlink()
    (images / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    (masks / "nomask.png").unlink()
    Image.fromarray(_bands([0, 2], height=SIZE - 4)).save(masks / "mismatch.png")
    Image.fromarray(_bands([0, 17])).save(masks / "badvalue.png")
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(masks / "rgbmask.png")
    Image.fromarray(np.full((SIZE, SIZE), 40000, np.uint16)).save(images / "gray16.png")
    (images / "float32.png").unlink()
    Image.fromarray(np.zeros((SIZE, SIZE), np.float32)).save(images / "float32.png", format="TIFF")
    _rgb(0).convert("L").save(images / "gray8.png")
    (masks / "badmaskfile.png").write_bytes(b"not a png at all")
    _ids(root, "labeled", [*labeled[:3], "good0", *labeled[3:]])
    _ids(root, "val", ["val0", "val1", "leak", "noimage"])
    _ids(root, "empty", [])
    return root


def _keys(report: Report) -> set[tuple[str, str, str]]:
    return {(f.severity, f.kind, Path(f.path_or_id).name) for f in report.findings}


def test_full_check_reports_every_problem_in_one_run(broken: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # set by some libraries; must not hide truncation
    report = check_data(open_source("folder", broken), SPLITS, full=True)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    assert _keys(report) == FAST
    assert len(report.findings) == len(FAST)
    by_kind = {f.kind: f for f in report.findings if f.kind != "image-unreadable"}
    assert "'good0' listed 2 times (lines 1, 4)" in by_kind["split-duplicate"].message
    assert "[17]" in by_kind["mask-values"].message and "0..10" in by_kind["mask-values"].message
    assert "12" in by_kind["size-mismatch"].message and "mismatch.png" in by_kind["size-mismatch"].message
    assert {f.severity for f in report.errors} == {"error"} and len(report.warnings) == 2
    assert report.sizes == {"labeled": 13, "unlabeled": 0, "val": 4}
    assert report.class_images is not None and report.class_images["c10"] == 0 and report.class_images["c0"] == 10
    assert report.class_pixels is not None and report.class_pixels["c0"] > 0


def test_fast_check_decodes_every_file(broken: Path) -> None:
    report = check_data(open_source("folder", broken), SPLITS, full=False)
    assert _keys(report) == FAST  # the truncated image too: its header is intact
    assert report.class_images is not None and report.class_images["c10"] == 0
    assert report.images == 15 and report.masks == 14 and report.files_read == 29 and report.files_cached == 0


def test_worker_processes_give_the_same_report(broken: Path) -> None:
    source = open_source("folder", broken)
    serial = check_data(source, SPLITS, full=True)
    parallel = check_data(source, SPLITS, full=True, workers=2)
    assert parallel.findings == serial.findings and parallel.class_pixels == serial.class_pixels


def test_format_groups_by_kind_and_truncates() -> None:
    findings = [Finding("error", "mask-missing", f"m{i}.png", "no mask") for i in range(5)]
    findings.append(Finding("warning", "split-overlap", "x", "w"))
    report = Report("folder", "/data", False, {"labeled": "l"}, findings)
    text = report.format(limit=2)
    assert "error mask-missing (5):" in text and "m1.png" in text and "m2.png" not in text
    assert "... and 3 more" in text and "warning split-overlap (1):" in text
    assert text.endswith("5 errors, 1 warning, 0 notes")
    assert "split-overlap" not in report.format(severities=("error",))
    assert json.loads(report.to_json())["counts"] == {"error": 5, "warning": 1, "info": 0}


def test_split_overlaps_and_missing_lists(broken: Path) -> None:
    root = broken.parent / "overlaps"
    root.mkdir()
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir()
    (root / "classes.txt").write_text("a\nb\n")
    for k, sample_id in enumerate("abcd"):
        _rgb(k).save(root / "images" / f"{sample_id}.jpg")
        Image.fromarray(_bands([0, 1])).save(root / "masks" / f"{sample_id}.png")
    _ids(root, "labeled", ["a", "b"])
    _ids(root, "unlabeled", ["b", "c", "d"])
    _ids(root, "val", ["d"])
    source = open_source("folder", root)
    report = check_data(source, {"labeled": "labeled", "unlabeled": "unlabeled", "val": "val"}, full=True)
    assert _keys(report) == {("warning", "split-overlap", "b"), ("error", "split-overlap", "d")}
    missing = check_data(source, {"labeled": "labeled", "val": "nope"}, full=False)
    assert _keys(missing) == {("error", "split-missing", "nope.txt")}


def test_clean_digits_pass(tiny_data: dict[str, str], tmp_path: Path) -> None:
    splits = {"labeled": tiny_data["labeled"], "unlabeled": tiny_data["unlabeled"], "val": "val"}
    report = check_data(open_source("folder", tiny_data["root"]), splits, full=True)
    assert report.errors == [] and {f.kind for f in report.warnings} <= {"class-absent"}
    assert report.sizes == {"labeled": 8, "unlabeled": 56, "val": 16}
    assert report.class_images is not None and report.class_images["background"] == 8
    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / "run", "dual_teacher"))
    fast = preflight(cfg)
    assert not fast.full and {f.kind for f in fast.findings} <= {"class-absent"}
    assert set(fast.splits) == {"labeled", "unlabeled", "val"}
    assert set(preflight(load_config(None, tiny_overrides(tiny_data, tmp_path / "run"))).splits) == {"labeled", "val"}


def test_preflight_reports_a_missing_root(tmp_path: Path) -> None:
    report = preflight(load_config(None, [f"data.root={tmp_path / 'absent'}"]))
    assert [(f.kind, f.severity) for f in report.findings] == [("layout", "error")]
    assert "absent" in report.format()


def test_cli_exit_codes_and_json(broken: Path, tiny_data: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    args = ["check-data", "--data", str(broken), "--labeled-split", "labeled", "--unlabeled-split", "empty"]
    assert main([*args, "--full", "--limit", "3"]) == 1
    out = capsys.readouterr().out
    assert all(name in out for *_, name in FAST)
    assert main([*args, "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert not result["ok"] and result["mode"] == "fast" and result["splits"]["unlabeled"]["ids"] == 0
    assert {(f["severity"], f["kind"], Path(f["path_or_id"]).name) for f in result["findings"]} == FAST
    clean = ["check-data", f"data.root={tiny_data['root']}", "--labeled-split", tiny_data["labeled"]]
    assert main(clean) == 0
    assert "0 errors" in capsys.readouterr().out


def test_standard_layouts(tmp_path: Path) -> None:
    city = make_cityscapes(tmp_path / "cityscapes")
    train = city / "gtFine" / "train"
    (train / "aachen" / "aachen_000000_000001_gtFine_labelIds.png").unlink()
    Image.new("L", (8, 8), 7).save(train / "bochum" / "bochum_000000_000000_gtFine_labelIds.png")
    report = check_data(open_source("cityscapes", city), {"labeled": "train", "val": "val"}, full=True)
    problems = {(f.kind, Path(f.path_or_id).name) for f in report.errors}
    assert problems == {
        ("mask-missing", "aachen_000000_000001_gtFine_labelIds.png"),
        ("size-mismatch", "bochum_000000_000000_gtFine_labelIds.png"),
    }
    assert report.class_images is not None
    assert report.class_images["road"] == 5 and report.class_images["car"] == 4 and report.class_images["sky"] == 0
    absent = {f.path_or_id for f in report.warnings if f.kind == "class-absent"}
    assert "sky" in absent and "road" not in absent and "car" not in absent

    ade = make_ade(tmp_path / "ade")
    Image.new("L", (56, 40), 200).save(ade / "annotations" / "training" / "ADE_train_00000002.png")
    report = check_data(open_source("ade20k", ade), {"labeled": "train", "val": "val"}, full=True)
    assert [(f.kind, Path(f.path_or_id).name) for f in report.errors] == [("mask-values", "ADE_train_00000002.png")]
    assert "[199] after the dataset's label mapping" in report.errors[0].message
