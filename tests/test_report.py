"""Pictures of the pseudo-labels during training, and the run report."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from dualteacher.cli import main
from dualteacher.config import load_config, method_settings_class
from dualteacher.experiments.plots import pseudo_label_grid
from dualteacher.methods import MethodContext, build_method
from dualteacher.training.loop import Trainer

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def dual_run(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path]:
    """Two one-iteration epochs of Dual Teacher, a shift each: teacher1 serves the first, teacher2 the second."""
    run = tmp_path_factory.mktemp("report") / "dt"
    cfg = load_config(
        None, tiny_overrides(tiny_data, run, "dual_teacher", train__iters_per_epoch=1, method__shift="epoch")
    )
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return trainer, run


def test_pictures_are_saved_at_every_evaluation(dual_run) -> None:
    trainer, run = dual_run
    pictures = sorted(p.name for p in (run / "pictures").iterdir())
    assert pictures == ["pseudo_labels_000001.png", "pseudo_labels_000002.png"]
    picture = np.asarray(Image.open(run / "pictures" / pictures[-1]))
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 10
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Images("pseudo_labels")] == [1, 2]
    assert trainer.method.active_teacher() == "teacher2"


def test_active_teacher_names_the_pseudo_labeller() -> None:
    def context(name: str) -> MethodContext:
        cfg = method_settings_class(name)(name=name)
        return MethodContext(
            cfg=cfg,
            build=lambda drop_path: nn.Conv2d(3, 2, 1),
            num_classes=2,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            labeled_pass=3,
        )

    assert build_method(context("supervised")).active_teacher() is None
    assert build_method(context("mean_teacher")).active_teacher() == "teacher"
    dual = build_method(context("dual_teacher"))
    shifts = []
    for iteration in range(12):  # shifts of one labelled pass: 3 iterations
        dual.begin_step(iteration, 0)
        shifts.append(dual.active_teacher())
    assert shifts == ["teacher1"] * 3 + ["teacher2"] * 3 + ["teacher1"] * 3 + ["teacher2"] * 3
    assert set(shifts) <= set(dual.teachers())


def test_pseudo_label_grid_shows_the_threshold() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(2)]
    labels = [rng.integers(0, 3, (20, 30)) for _ in range(2)]
    conf = [rng.random((20, 30)) for _ in range(2)]
    colours = np.random.default_rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    low = pseudo_label_grid(images, labels, conf, labels, 0.1, colours, "t")
    high = pseudo_label_grid(images, labels, conf, labels, 0.9, colours, "t")
    assert low.dtype == np.uint8 and low.shape == high.shape and low.shape[2] == 3
    assert not np.array_equal(low, high)


def test_report_writes_one_png(dual_run, tmp_path: Path, capsys) -> None:
    _, run = dual_run
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 0
    image = Image.open(tmp_path / "r.png")
    assert image.format == "PNG" and image.size[0] > 1000
    assert main(["report", str(run)]) == 0
    assert (run / "report.png").is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "metrics.jsonl" in capsys.readouterr().err
