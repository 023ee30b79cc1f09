"""End-to-end runs of a few iterations: loss, checkpoints, eval, reproducibility, resume."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualteacher.checkpoint import load_checkpoint
from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.runlog import read_log
from dualteacher.training.loop import PIPED_BAR_SECONDS, Trainer, progress_bar, progress_label, train

from conftest import tiny_overrides


def weights(path: Path, prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}


@pytest.mark.slow
def test_supervised_run_learns_and_eval_reproduces_it(tiny_data, tmp_path: Path, capsys) -> None:
    cfg = load_config(
        None, tiny_overrides(tiny_data, tmp_path / "run", "supervised", train__epochs=4, train__eval_every=4)
    )
    record = train(cfg, progress=False)
    losses = [r["loss"] for r in read_log(tmp_path / "run") if r["type"] == "train"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert (tmp_path / "run" / "config.yaml").exists()

    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run" / "last.safetensors"), "--data", tiny_data["root"], "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["miou"] == pytest.approx(record["student/miou"], abs=1e-9)
    assert result["pixel_accuracy"] == pytest.approx(record["student/pixel_accuracy"], abs=1e-9)


@pytest.mark.slow
def test_progress_bar_names_the_run_and_redraws_rarely_when_piped(tiny_data, tmp_path: Path, capsys) -> None:
    train(load_config(None, tiny_overrides(tiny_data, tmp_path / "warmup", train__epochs=3)), progress=True)
    assert "warmup (supervised)" in capsys.readouterr().err  # not just "supervised": the demo has three such runs
    assert progress_label("dual_teacher", tmp_path / "dual_teacher_seed1") == "dual_teacher_seed1"
    assert progress_label("dual_teacher", tmp_path / "dual_teachers") == "dual_teachers (dual_teacher)"
    piped = progress_bar(10, 0, "run", enabled=True)  # capsys: stderr is not a terminal
    assert piped.mininterval == piped.maxinterval == PIPED_BAR_SECONDS > 10
    piped.close()


@pytest.mark.slow
def test_same_seed_same_metrics(tiny_data, tmp_path: Path) -> None:
    records = [
        train(
            load_config(None, tiny_overrides(tiny_data, tmp_path / f"r{i}", "dual_teacher", train__epochs=1)),
            progress=False,
        )
        for i in range(2)
    ]
    assert records[0]["student/miou"] == records[1]["student/miou"]
    a = weights(tmp_path / "r0" / "last.safetensors", "model/")
    b = weights(tmp_path / "r1" / "last.safetensors", "model/")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_dual_teacher_checkpoint_holds_student_and_every_teacher(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_data,
            tmp_path / "dt",
            "dual_teacher",
            method__num_teachers=3,
            method__mixings="[cutmix, classmix, cutmix]",
            method__shift="epoch",
        ),
    )
    trainer = Trainer(cfg, progress=False)
    assert all(not p.requires_grad for t in trainer.method.teachers().values() for p in t.parameters())
    record = trainer.fit()
    assert {"student/miou", "teacher1/miou", "teacher2/miou", "teacher3/miou"} <= set(record)
    assert "coupling/teacher2/disagreement" in record and "coupling/teacher3/kl" in record
    assert all(p.grad is None for teacher in trainer.method.teachers().values() for p in teacher.parameters())
    tensors, state = load_checkpoint(tmp_path / "dt" / "last.safetensors")
    roles = {k.split("/")[1] for k in tensors if k.startswith("model/")}
    assert roles == {"student", "teacher1", "teacher2", "teacher3"}
    # 2 epochs of 3 iterations, period 1: teachers 1 and 2 served one shift each, teacher 3 none.
    assert state["method"]["pool"]["counters"][:2] == [3, 3]
    assert state["method"]["pool"]["counters"][2] == 0
    # teacher 3 never served: it is still the initial copy of the student, unlike teachers 1 and 2.
    head = [k.split("/", 2)[2] for k in tensors if k.startswith("model/teacher3/") and k.endswith("weight")][-1]
    assert not torch.equal(tensors[f"model/teacher1/{head}"], tensors[f"model/teacher3/{head}"])


@pytest.mark.slow
def test_mean_teacher_equals_dual_teacher_with_one_persistent_teacher(tiny_data, tmp_path: Path) -> None:
    common = {"method__mixings": "[cutmix]", "method__student_drop_path": 0.1}
    train(load_config(None, tiny_overrides(tiny_data, tmp_path / "mt", "mean_teacher", **common)), progress=False)
    train(
        load_config(
            None,
            tiny_overrides(
                tiny_data,
                tmp_path / "dt",
                "dual_teacher",
                method__num_teachers=1,
                method__restart_per_shift=False,
                method__icl_weight=0.0,
                **common,
            ),
        ),
        progress=False,
    )
    mt = weights(tmp_path / "mt" / "last.safetensors", "model/")
    dt = weights(tmp_path / "dt" / "last.safetensors", "model/")
    assert len(mt) == len(dt) > 0
    for key, value in mt.items():
        assert torch.equal(value, dt[key.replace("model/teacher/", "model/teacher1/")]), key


@pytest.mark.slow
def test_resume_continues_exactly(tiny_data, tmp_path: Path) -> None:
    train(load_config(None, tiny_overrides(tiny_data, tmp_path / "full", "dual_teacher")), progress=False)
    interrupted = tiny_overrides(tiny_data, tmp_path / "part", "dual_teacher")
    Trainer(load_config(None, interrupted), progress=False).fit(stop_at=4)
    Trainer(load_config(None, interrupted), progress=False).fit()
    a = load_file(str(tmp_path / "full" / "last.safetensors"))
    b = load_file(str(tmp_path / "part" / "last.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    iterations = [r["iteration"] for r in read_log(tmp_path / "part") if r["type"] == "train"]
    assert iterations == sorted(set(iterations))
