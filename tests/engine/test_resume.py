"""Resuming a run directory with other settings: each difference is listed, safe ones need
--resume-with-changes, unsafe ones are refused with the reason, and nothing is written unless
the run continues; more epochs continue the LR schedule without a jump."""

import shutil
from pathlib import Path

import pytest
import yaml

from dualteacher.cli import main
from dualteacher.config import Config, load_config
from dualteacher.data.core import FileListDataset
from dualteacher.data.digits import generate_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.runlog import read_log
from dualteacher.training.loop import Trainer
from dualteacher.training.resume import (
    NOTE,
    REFUSED,
    SAFE,
    Change,
    ResumeError,
    compare,
    continued_anchor,
    data_fingerprint,
    decide,
)

from conftest import tiny_overrides

LR = 0.002  # tiny_overrides' optim.lr; 2 epochs of 3 iterations, stopped after epoch 1


@pytest.fixture(scope="module")
def half_run(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A supervised tiny run stopped at iteration 3 of 6, with its checkpoint."""
    run = tmp_path_factory.mktemp("resume") / "run"
    Trainer(load_config(None, tiny_overrides(tiny_data, run)), progress=False).fit(stop_at=3)
    return run


@pytest.fixture
def run(half_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``half_run``."""
    return Path(shutil.copytree(half_run, tmp_path / "run"))


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def refused(argv: list[str], run_dir: Path, capsys) -> str:
    """Run ``dualteacher train argv``; assert exit 2, no traceback and an untouched run dir; return stderr."""
    before = snapshot(run_dir)
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Nothing was written" in err
    assert snapshot(run_dir) == before
    return err


def test_a_new_lr_is_refused_even_with_resume_with_changes(tiny_data, run: Path, capsys) -> None:
    overrides = tiny_overrides(tiny_data, run)
    err = refused([*overrides, "optim.lr=0.05", "train.epochs=3", "--quiet"], run, capsys)
    assert f"optim.lr: {LR} → 0.05  refused: the optimiser state" in err
    assert "train.epochs: 2 → 3  safe" in err
    err = refused([*overrides[:3], "--resume-with-changes", *overrides[3:], "optim.lr=0.05", "--quiet"], run, capsys)
    assert f"optim.lr: {LR} → 0.05  refused" in err
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == LR


@pytest.mark.slow
def test_more_epochs_need_consent_and_continue_the_lr_without_a_jump(tiny_data, run: Path, capsys, caplog) -> None:
    longer = tiny_overrides(tiny_data, run, train__epochs=3, train__eval_every=3)
    err = refused([*longer, "--quiet"], run, capsys)
    assert "train.epochs: 2 → 3  safe: the LR decays from 0.5× its base value at iteration 3" in err
    assert "train.eval_every: 1 → 3  safe" in err and "--resume-with-changes" in err

    trainer = Trainer(load_config(None, longer), allow_changes=True, progress=False)
    assert "with changes:\n  train.epochs: 2 → 3" in caplog.text
    trainer.fit(stop_at=6)
    assert main(["train", *longer[:4], "--quiet", *longer[4:]]) == 0  # no changes left: plain resume
    lrs = {r["iteration"]: r["lr"] for r in read_log(run) if r["type"] == "train"}
    before = [LR * (1 - i / 6) for i in range(3)]  # the 2-epoch schedule
    after = [LR * 0.5 * (1 - (i - 3) / 6) for i in range(3, 9)]  # from its LR at 3 down to 0 at 9
    assert [lrs[i + 1] for i in range(9)] == pytest.approx(before + after)
    assert [r["iteration"] for r in read_log(run) if r["type"] == "resume"] == [3]
    saved = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (saved["epochs"], saved["eval_every"]) == (3, 3)
    assert [r["epoch"] for r in read_log(run) if r["type"] == "eval"] == [1, 3]


def test_another_dataset_with_the_same_classes_is_refused(tiny_data, run: Path, tmp_path: Path, capsys) -> None:
    other = tmp_path / "other"
    generate_digit_scenes(other, num_train=64, num_val=16, size=48, seed=1)
    split_source(open_source("folder", other), "1/8", 0)  # the same ids and class names, other images
    overrides = [*tiny_overrides(tiny_data, run), f"data.root={other}", "--resume-with-changes"]
    err = refused(overrides, run, capsys)
    assert f"data.root: {tiny_data['root']} → {other}  refused: other data: the labeled split" in err


def test_the_same_dataset_at_another_path_is_a_safe_change(
    tiny_data, run: Path, tmp_path: Path, capsys, caplog
) -> None:
    moved = Path(shutil.copytree(tiny_data["root"], tmp_path / "moved"))
    overrides = [*tiny_overrides(tiny_data, run), f"data.root={moved}"]
    assert "data.root" in refused(overrides, run, capsys)
    trainer = Trainer(load_config(None, overrides), allow_changes=True, progress=False)
    assert trainer.state.iteration == 3 and "same ids and file sizes" in caplog.text


def test_another_class_count_is_refused_clearly(tiny_data, run: Path, tmp_path: Path, capsys) -> None:
    root = Path(shutil.copytree(tiny_data["root"], tmp_path / "more_classes"))
    with (root / "classes.txt").open("a") as fh:
        fh.write("extra\n")
    overrides = [*tiny_overrides({**tiny_data, "root": str(root)}, run), "--resume-with-changes"]
    err = refused(overrides, run, capsys)
    assert "classes: 11 classes → 12 classes  refused: class 11: (none) → extra; the network's output layer" in err


def test_another_method_is_refused_clearly(tiny_data, run: Path, capsys) -> None:
    overrides = [*tiny_overrides(tiny_data, run, "mean_teacher"), "--resume-with-changes"]
    err = refused(overrides, run, capsys)
    assert "method.name: supervised → mean_teacher  refused: the checkpoint holds the networks and state" in err


# ------------------------------------------------------------------ the rules, without training
def state(cfg: Config, iteration: int = 3, **extra: object) -> dict:
    """A training checkpoint's state as written for ``cfg`` (6 iterations of 3 per epoch)."""
    return {
        "config": cfg.to_dict(),
        "classes": ["a", "b"],
        "iteration": iteration,
        "schedule": {"iters_per_epoch": 3, "total_iters": 6, "anchor": None},
        "data": {"val": {"ids": 4}},
        **extra,
    }


def base(**settings: object) -> Config:
    """A Mean Teacher config of 2 epochs and 2 workers, with ``settings`` (``train__seed=1``) on top."""
    overrides = {
        "method.name": "mean_teacher",
        "train.epochs": 2,
        "data.workers": 2,
        **{k.replace("__", "."): v for k, v in settings.items()},
    }
    return load_config(None, [f"{k}={v}" for k, v in overrides.items()])


def changes_to(**settings: object) -> list[Change]:
    """The changes from a checkpoint of ``base()`` to ``base(**settings)``, same data."""
    return compare(state(base()), base(**settings), ["a", "b"], 3, lambda: {"val": {"ids": 4}})


def test_data_workers_is_applied_with_a_note_and_needs_no_consent() -> None:
    changes = changes_to(data__workers=0)
    assert [(c.key, c.status) for c in changes] == [("data.workers", NOTE)]
    decide(changes, allow=False, where="run")


@pytest.mark.parametrize(
    "setting, status",
    [
        ("train__log_every=1", SAFE),
        ("train__checkpoint_every=5", SAFE),
        ("data__val_batch_size=2", SAFE),
        ("data__eval_window_batch=2", SAFE),
        ("train__device=cpu", SAFE),
        ("train__batch_size=2", REFUSED),
        ("train__seed=1", REFUSED),
        ("data__crop_size=32", REFUSED),
        ("data__eval_mode=slide", REFUSED),
        ("model__encoder=resnet18", REFUSED),
        ("method__threshold=0.5", REFUSED),
        ("optim__warmup_iters=2", REFUSED),
        ("train__keep=student", REFUSED),
    ],
)
def test_each_setting_is_safe_or_refused(setting: str, status: str) -> None:
    key, value = setting.split("=")
    changes = changes_to(**{key: value})
    assert [(c.key, c.status) for c in changes] == [(key.replace("__", "."), status)]
    assert status == SAFE or changes[0].reason


def test_a_length_that_ends_before_the_checkpoint_or_a_finished_run_is_refused() -> None:
    shorter = compare(state(base(), iteration=4), base(train__epochs=1), ["a", "b"], 3, dict)
    assert shorter[0].status == REFUSED and "already at iteration 4" in shorter[0].reason
    finished = compare(state(base(), iteration=6), base(train__epochs=4), ["a", "b"], 3, dict)
    assert finished[0].status == REFUSED and "decayed to 0" in finished[0].reason
    other_epoch = compare(state(base()), base(), ["a", "b"], 4, dict)
    assert [(c.key, c.status) for c in other_epoch] == [("iterations per epoch", REFUSED)]


def test_a_moved_dataset_without_a_record_of_its_data_is_refused() -> None:
    old = state(base())
    del old["data"]
    changes = compare(old, base(data__root="/elsewhere"), ["a", "b"], 3, lambda: {"val": {"ids": 4}})
    assert changes[0].status == REFUSED and "older version" in changes[0].reason
    with pytest.raises(ResumeError, match="data.root: (.*) → /elsewhere  refused"):
        decide(changes, allow=True, where="run")


def test_a_setting_the_checkpoint_predates_counts_as_its_default() -> None:
    old = state(base())
    del old["config"]["train"]["channels_last"]
    assert compare(old, base(), ["a", "b"], 3, dict) == []
    assert [str(c) for c in compare(old, base(train__channels_last=True), ["a", "b"], 3, dict)] == [
        "train.channels_last: false → true  safe"
    ]
    del old["config"]["model"]["aspp_dropout"]  # trained with SMP's ASPP dropout 0.5, before the setting
    assert [c.key for c in compare(old, base(), ["a", "b"], 3, dict)] == ["model.aspp_dropout"]
    assert compare(old, base(model__aspp_dropout=0.5), ["a", "b"], 3, dict) == []


def test_the_lr_anchor_follows_warm_up_and_chained_extensions() -> None:
    warm = base(optim__warmup_iters=4)
    assert continued_anchor(state(warm, iteration=2), warm.optim, 3, 12) is None  # the warm-up goes on
    assert continued_anchor(state(warm, iteration=5), warm.optim, 3, 12) == (5, pytest.approx(0.5))
    extended = state(
        base(train__epochs=3), iteration=6, schedule={"iters_per_epoch": 3, "total_iters": 9, "anchor": [3, 0.5]}
    )
    assert continued_anchor(extended, base().optim, 3, 9) == (3, 0.5)  # same length: the stored anchor
    assert continued_anchor(extended, base().optim, 3, 12) == (6, pytest.approx(0.25))


def test_the_data_fingerprint_survives_a_file_removed_mid_run(tmp_path: Path) -> None:
    images = [tmp_path / f"{i}.png" for i in "ab"]
    for path in images:
        path.write_bytes(b"x" * 10)
    dataset = FileListDataset(["a", "b"], images, None, labeled=False)
    before = data_fingerprint({"unlabeled": dataset})
    images[1].unlink()  # a stopped run still fingerprints its data for the checkpoint it writes
    after = data_fingerprint({"unlabeled": dataset})
    assert after["unlabeled"]["ids"] == 2 and after != before
