"""The demo: warm-up first, every method from its student, times that count the warm-up."""

import json
from pathlib import Path

import pytest

import dualteacher.experiments.demo as demo
import dualteacher.experiments.plots as plots
from dualteacher.data.digits import generate_digit_scenes
from dualteacher.runlog import read_log

TINY = [
    "data.crop_size=48",
    "data.workers=0",
    "data.val_batch_size=8",
    "model.weights=null",
    "model.decoder_channels=32",
    "train.batch_size=4",
    "train.unlabeled_batch_size=4",
    "train.eval_every=1",
    "train.probe_images=2",
]


@pytest.fixture
def tiny_scenes(tmp_path, monkeypatch) -> Path:
    root = generate_digit_scenes(tmp_path / "digits", num_train=64, num_val=8, size=48, seed=0)
    monkeypatch.setattr(demo, "ensure_digit_scenes", lambda: root)
    return root


@pytest.mark.slow
def test_the_demo_warm_starts_every_method_and_counts_the_warm_up(tiny_scenes, tmp_path, monkeypatch, caplog):
    out = tmp_path / "demo"
    loaded, real_load_model = [], plots.load_model

    def load_model(path, role=None):
        loaded.append((Path(path).relative_to(out), role))
        return real_load_model(path, role)

    monkeypatch.setattr(plots, "load_model", load_model)
    rows = demo.run_demo(
        out, methods=["supervised", "mean_teacher"], iterations=2, warmup=2, progress=False, extra=TINY
    )
    assert [r["method"] for r in rows] == ["supervised", "mean_teacher", "supervised_all"]
    warm = [r["warmup_train_seconds"] for r in rows]
    assert warm[0] == warm[1] > 0 and warm[2] == 0
    assert all(r["train_seconds"] > r["warmup_train_seconds"] for r in rows)
    trained = {
        name: [r["iteration"] for r in read_log(out / name) if r["type"] == "eval"][-1]
        for name in ("warmup", "supervised", "mean_teacher", "supervised_all")
    }
    assert [r["iterations"] for r in rows] == [
        trained["warmup"] + trained["supervised"],
        trained["warmup"] + trained["mean_teacher"],
        trained["supervised_all"],
    ]
    assert (out / "demo.png").stat().st_size > 0
    # the figure shows the final students, whose mIoU the table reports (best.safetensors may hold a teacher)
    assert loaded == [
        (Path(run) / "last.safetensors", "student") for run in ("supervised", "mean_teacher", "supervised_all")
    ]
    assert json.loads((out / "results.json").read_text()) == rows
    for name in ("supervised", "mean_teacher"):
        settings = (out / name / "config.yaml").read_text()
        assert f"init_from: {out / 'warmup'}" in settings
    assert "init_from: null" in (out / "supervised_all" / "config.yaml").read_text()
    assert trained == {"warmup": 2, "supervised": 2, "mean_teacher": 2, "supervised_all": 4}
    # a second call reuses the finished runs, says so, and reports the same table (times from the logs)
    caplog.clear()
    again = demo.run_demo(
        out, methods=["supervised", "mean_teacher"], iterations=2, warmup=2, progress=False, extra=TINY
    )
    printed = caplog.text
    assert again == rows and demo.format_table(rows) in printed
    assert all(
        f"{name}: finished in an earlier call, reused" in printed
        for name in ("warmup", "supervised", "mean_teacher", "supervised_all")
    )
    with pytest.raises(ValueError, match="iterations >= 1 and warmup >= 0"):
        demo.run_demo(out, iterations=2, warmup=-1, extra=TINY)


def test_an_interrupted_run_stops_the_demo(tiny_scenes, tmp_path, monkeypatch):
    trained = []

    def interrupted_train(cfg, progress):
        trained.append(cfg.run_dir)
        return {"iteration": 1, "train_seconds": 0.1, "interrupted": "SIGINT"}

    monkeypatch.setattr(demo, "train", interrupted_train)
    assert demo.run_demo(tmp_path / "demo", iterations=2, warmup=2, progress=False, extra=TINY) is None
    assert trained == [str(tmp_path / "demo" / "warmup")]  # no method starts from a partial warm-up
    assert not (tmp_path / "demo" / "results.json").exists()


def test_without_warm_up_no_run_is_warm_started():
    runs = demo.demo_runs(["supervised", "dual_teacher"], "l", "u", 5, 0, upper_bound=True)
    assert [(r.name, r.iterations, r.warm_start) for r in runs] == [
        ("supervised", 5, False),
        ("dual_teacher", 5, False),
        ("supervised_all", 5, False),
    ]


def test_scenes_are_chosen_by_disagreement_alone_and_scored_on_digit_pixels():
    import numpy as np

    from dualteacher.experiments.plots import digit_accuracy, most_disputed

    agree = np.zeros((3, 4, 4), dtype=np.int64)
    predictions = np.stack([agree, agree.copy(), agree.copy()])  # [runs, images, H, W]
    predictions[1, 2, :2] = 5  # image 2: 8 disputed pixels
    predictions[2, 0, 0, 0] = 1  # image 0: 1 disputed pixel
    assert most_disputed(predictions, 2) == [2, 0]
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[0] = 3
    mask[1, 0] = 255
    prediction = np.zeros((4, 4), dtype=np.int64)
    prediction[0, :3] = 3
    assert digit_accuracy(prediction, mask) == 0.75
    assert np.isnan(digit_accuracy(prediction, np.zeros((4, 4), dtype=np.int64)))


def test_the_help_states_the_demos_length_and_warm_up():
    from dualteacher.cli import build_parser, sub_commands
    from dualteacher.experiments.recipe import WARMUP_ITERATIONS

    helps = {a.dest: a.help for a in sub_commands(build_parser())["demo"]._actions}
    assert f"(default: {demo.DEMO_ITERATIONS})" in helps["iterations"]
    assert f"(default: {WARMUP_ITERATIONS};" in helps["warmup"]
