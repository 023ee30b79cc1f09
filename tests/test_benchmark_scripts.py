"""The benchmark scripts' own logic: schedules, tables and the pseudo-label quality measure."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_overrides
from dualteacher.config import load_config
from dualteacher.engine import train
from dualteacher.inference import load_model

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_table_has_mean_and_std_over_seeds_and_the_upper_bound_in_every_column(tmp_path: Path) -> None:
    cm = script("compare_methods")
    row = {"budget": "iterations", "iterations": 100, "s_per_it": 0.5, "train_seconds": 50.0, "total_seconds": 60.0,
           "peak_memory_mb": 900.0}
    results = [
        {**row, "variant": "fixmatch", "fraction": "1/16", "seed": 0, "student_miou": 0.4},
        {**row, "variant": "fixmatch", "fraction": "1/16", "seed": 1, "student_miou": 0.6},
        {**row, "variant": "supervised_all", "fraction": "all", "seed": 0, "student_miou": 0.9},
    ]
    text = cm.write_table(results, ["1/16", "1/8"], ["fixmatch"], tmp_path / "t.md")
    assert "| fixmatch | 100 | 0.5000 ± 0.1414 | – | 0.500 | 50 | 60 | 900 |" in text
    assert "| supervised, all scenes labelled | 100 | 0.9000 (1 seed) | 0.9000 (1 seed) |" in text
    assert "Equal wall-clock" not in text
    assert text.startswith("Trained on: cpu\n")
    gpu = [{**results[0], "device": "cuda: NVIDIA H200", "overrides": ["train.amp=off"]}, results[1]]
    assert "Trained on: cpu; cuda: NVIDIA H200 (train.amp=off)" in cm.write_table(gpu, ["1/16"], ["fixmatch"], tmp_path / "g.md")


def test_pseudo_label_quality_at_threshold_zero_is_pixel_accuracy(tiny_data, tmp_path: Path) -> None:
    train(load_config(None, tiny_overrides(tiny_data, tmp_path, "dual_teacher")), progress=False)
    quality = script("pseudo_label_quality").quality
    checkpoint = tmp_path / "last.safetensors"
    everything = quality(checkpoint, "teacher1", tiny_data["unlabeled"], 0.0, None)
    assert everything["confident_share"] == pytest.approx(1.0)
    assert all(c == pytest.approx(1.0) for c in everything["coverage"] if c > 0)
    metrics = load_model(checkpoint, "teacher1").eval_dataset(split=tiny_data["unlabeled"])
    assert everything["confident_accuracy"] == pytest.approx(metrics.pixel_accuracy, abs=1e-6)
    strict = quality(checkpoint, "teacher1", tiny_data["unlabeled"], 0.99, None)
    assert strict["confident_share"] < everything["confident_share"]


def test_gpu_check_script_parses_and_its_overrides_are_valid_settings() -> None:
    path = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    overrides = re.search(r"--set ((?:\S+=\S+ ?)+)", path.read_text()).group(1).split()
    cfg = load_config(None, overrides)
    assert cfg.train.amp == "off" and cfg.train.eval_every > 1000


def test_report_finds_equal_wall_clock_runs_whatever_their_iteration_count(tmp_path: Path) -> None:
    cm = script("compare_methods")
    (tmp_path / "1-16_seed0_fixmatch_time1423.json").write_text('{"student_miou": 0.5}')
    (tmp_path / "1-16_seed0_fixmatch_iterations1000.json").write_text('{"student_miou": 0.4}')
    job = {"budget": "time", "iterations": 1390, "summary": str(tmp_path / "1-16_seed0_fixmatch_time1390.json")}
    assert cm.finished_summary(job) == {"student_miou": 0.5}
    assert cm.finished_summary({**job, "summary": str(tmp_path / "1-16_seed1_fixmatch_time1390.json")}) is None
    exact = {"budget": "iterations", "iterations": 1000, "summary": str(tmp_path / "1-16_seed0_fixmatch_iterations1000.json")}
    assert cm.finished_summary(exact) == {"student_miou": 0.4}
    assert cm.finished_summary({**exact, "iterations": 999, "summary": str(tmp_path / "x_iterations999.json")}) is None
