"""Files whose content contradicts the layout are found before the first iteration (issue 14 §3),
a second check reads only what changed, and a file that goes bad mid-run stops the run with a
checkpoint and a message naming it. The data and settings are the issue's (:mod:`scenes`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualteacher.checkpoint import load_checkpoint
from dualteacher.cli import main
from dualteacher.data import check
from dualteacher.data.check import check_data, preflight
from dualteacher.data.core import DataError
from dualteacher.data.registry import open_source
from dualteacher.data.sampler import ShuffledStreamSampler
from dualteacher.training.loop import Trainer
from dualteacher.training.streams import derive_seed

from scenes import SIZE, make_scenes, scenes_config

SPLITS = {"labeled": "labeled", "unlabeled": "unlabeled", "val": "val"}


def _paint_corner(path: Path, value: int) -> None:
    mask = np.array(Image.open(path))
    mask[:4, :4] = value
    Image.fromarray(mask).save(path)


def _truncate(path: Path) -> bytes:
    """Cut ``path`` in half (its header stays readable); return the original bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def _corrupt_in_place(path: Path) -> bytes:
    """Invert the second half of ``path``'s bytes, keeping its size and modification time (what
    the check's cache compares): it goes bad unseen. Returns the original bytes."""
    data, stat = path.read_bytes(), path.stat()
    half = len(data) // 2
    path.write_bytes(data[:half] + bytes(b ^ 0xFF for b in data[half:]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return data


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    return make_scenes(tmp_path / "scenes")


@pytest.mark.parametrize("value", [7, 128])
@pytest.mark.parametrize("sample_id", ["train002", "val001"])
def test_out_of_range_mask_values_stop_training_before_it_starts(
    scenes: Path, tmp_path: Path, value: int, sample_id: str
) -> None:
    _paint_corner(scenes / "masks" / f"{sample_id}.png", value)
    with pytest.raises(DataError) as caught:
        Trainer(scenes_config(scenes, tmp_path / "run"))
    message = str(caught.value)
    assert f"masks/{sample_id}.png: values [{value}] are not classes 0..2 nor 255" in message
    assert "1 error" in message and not (tmp_path / "run").exists()


def test_the_check_uses_the_configured_ignore_index(scenes: Path, tmp_path: Path) -> None:
    _paint_corner(scenes / "masks" / "train001.png", 7)
    report = preflight(scenes_config(scenes, tmp_path / "run", data__ignore_index=7))
    assert report.errors == []
    report = preflight(scenes_config(scenes, tmp_path / "run", data__ignore_index=200))
    assert [(f.kind, Path(f.path_or_id).name) for f in report.errors] == [("mask-values", "train001.png")]
    assert "values [7] after the dataset's label mapping" in report.errors[0].message


def test_binary_masks_saved_as_0_255_are_refused_with_the_fix(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "defects", ["background", "defect"], foreground=255, disc=0)
    with pytest.raises(DataError) as caught:
        Trainer(scenes_config(root, tmp_path / "run"))
    message = str(caught.value)
    assert "error mask-binary (2):" in message
    assert "masks/train000.png: no labelled mask holds class 1 ('defect') but 4 of 4 hold 255" in message
    assert "masks/val000.png: no val mask holds class 1" in message
    assert (
        f"record that 255 is class 1 in mask_values.json (every command then reads the masks so), run: "
        f"dualteacher init --data {root}" in message
    )


def test_absent_classes_and_all_ignore_masks_are_loud_warnings(scenes: Path, tmp_path: Path) -> None:
    for sample_id in ("train000", "train001", "train002", "train003"):
        mask = np.array(Image.open(scenes / "masks" / f"{sample_id}.png"))
        mask[mask == 2] = 0
        Image.fromarray(mask).save(scenes / "masks" / f"{sample_id}.png")
    Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(scenes / "masks" / "train003.png")
    report = preflight(scenes_config(scenes, tmp_path / "run"))
    assert report.errors == []
    assert {(f.kind, Path(f.path_or_id).name) for f in report.warnings} == {
        ("class-absent", "disc"),
        ("mask-all-ignore", "train003.png"),
    }
    assert report.class_images == {"background": 3, "square": 3, "disc": 0}


def test_a_second_check_reads_only_what_changed(scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real = check._read_file

    def counting(path: str):
        reads.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(check, "_read_file", counting)
    source, cache = open_source("folder", scenes), tmp_path / "cache"
    cold = check_data(source, SPLITS, full=False, cache_dir=cache)
    assert len(reads) == 16 + 8 and (cold.files_read, cold.files_cached) == (24, 0)
    assert "checked 16 images and 8 masks (decoded): 24 files read in this process, 0 unchanged" in cold.format()

    reads.clear()
    warm = check_data(source, SPLITS, full=False, cache_dir=cache)
    assert reads == [] and (warm.files_read, warm.files_cached) == (0, 24)
    assert warm.findings == cold.findings and warm.class_pixels == cold.class_pixels

    _paint_corner(scenes / "masks" / "val002.png", 7)
    os.utime(scenes / "images" / "train005.png", ns=(1, 1))
    again = check_data(source, SPLITS, full=False, cache_dir=cache)
    assert sorted(reads) == ["train005.png", "val002.png"] and again.files_read == 2
    assert [(f.kind, Path(f.path_or_id).name) for f in again.errors] == [("mask-values", "val002.png")]

    reads.clear()
    full = check_data(source, SPLITS, full=True, cache_dir=cache)
    assert len(reads) == 24 and full.files_cached == 0  # every file decoded again, whatever the cache holds
    (cache / next(os.scandir(cache)).name).write_text("{not json")
    reads.clear()
    assert check_data(source, SPLITS, full=False, cache_dir=cache).files_read == 24 and len(reads) == 24


def test_check_data_command_uses_the_cache_unless_told_not_to(
    scenes: Path, check_cache: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["check-data", "--data", str(scenes), "--unlabeled-split", "unlabeled", "--workers", "0", "--json"]
    files = []
    for extra in ([], [], ["--no-cache"]):
        assert main([*args, *extra]) == 0
        files.append(json.loads(capsys.readouterr().out)["files"])
    assert [(f["read"], f["cached"]) for f in files] == [(24, 0), (0, 24), (24, 0)]
    assert files[0]["cache"].startswith(str(check_cache)) and files[2]["cache"] is None


def test_worker_processes_and_the_cache_give_the_same_report(scenes: Path, tmp_path: Path) -> None:
    _paint_corner(scenes / "masks" / "train001.png", 128)
    source = open_source("folder", scenes)
    serial = check_data(source, SPLITS, full=True)
    parallel = check_data(source, SPLITS, full=False, workers=2, cache_dir=tmp_path / "cache")
    cached = check_data(source, SPLITS, full=False, workers=2, cache_dir=tmp_path / "cache")
    assert parallel.workers == 2 and cached.workers == 0 and cached.files_read == 0
    assert serial.findings == parallel.findings == cached.findings and len(serial.errors) == 1
    assert serial.class_pixels == parallel.class_pixels == cached.class_pixels


@pytest.mark.slow
def test_a_bad_labelled_image_mid_run_leaves_a_checkpoint_and_names_the_file(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    stream = iter(ShuffledStreamSampler(4, derive_seed(0, 1)))  # the labelled stream of seed 0
    second_batch = [next(stream)[0] for _ in range(4)][2:]
    bad = scenes / "images" / f"train{second_batch[0]:03d}.png"
    run_dir = tmp_path / "run"
    args = [
        "train",
        f"data.root={scenes}",
        "data.crop_size=32",
        "data.workers=1",
        "model.encoder=resnet18",
        "model.decoder_channels=16",
        "method.name=supervised",
        "train.epochs=1",
        "train.iters_per_epoch=2",
        "train.batch_size=2",
        "train.probe_images=1",
        "data.val_batch_size=2",
        f"run_dir={run_dir}",
        "--quiet",
    ]
    assert main(["check-data", f"data.root={scenes}", "method.name=supervised", "--quiet"]) == 0
    original = _corrupt_in_place(bad)  # after the check, unseen by its cache: it breaks iteration 1
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"error: image {bad}: cannot decode (OSError: unrecognized data stream contents" in err
    assert "Traceback" not in err and "DataLoader worker" not in err
    assert "stopped at iteration 1 and wrote the checkpoint" in err and "run the same command to continue" in err
    _, state = load_checkpoint(run_dir / "last.safetensors")
    assert state["iteration"] == 1

    bad.write_bytes(original)
    assert main(args) == 0
    assert "from last.safetensors at iteration 1" in capsys.readouterr().out
    _, done = load_checkpoint(run_dir / "last.safetensors")
    assert done["iteration"] == 2


@pytest.mark.slow
def test_a_bad_val_file_at_evaluation_is_evaluated_after_the_fix(scenes: Path, tmp_path: Path) -> None:
    cfg = scenes_config(scenes, tmp_path / "run")
    trainer = Trainer(cfg, progress=False)
    original = _truncate(scenes / "images" / "val002.png")
    with pytest.raises(DataError) as caught:
        trainer.fit()
    assert str(caught.value).startswith(f"image {scenes / 'images' / 'val002.png'}: cannot decode")
    assert "the run stopped at iteration 2 and wrote the checkpoint" in str(caught.value)
    _, state = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert state["iteration"] == 2 and state["history"] == []

    (scenes / "images" / "val002.png").write_bytes(original)
    record = Trainer(cfg, progress=False).fit()  # the run's last evaluation, missed, runs now
    assert record["iteration"] == 2 and "student/miou" in record
    _, state = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert [r["iteration"] for r in state["history"]] == [2]
