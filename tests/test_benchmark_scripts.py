"""The benchmark scripts: the comparison's entry points and the pseudo-label quality measure."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_overrides
from dualteacher.cli import build_parser
from dualteacher.experiments.compare import CompareOptions, Comparison, check_options
from dualteacher.config import load_config, save_config
from dualteacher.training.loop import train
from dualteacher.inference.model import load_model
from dualteacher.experiments.recipe import WARMUP_ITERATIONS

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_compare_methods_is_dualteacher_compare_on_the_digit_scenes(tmp_path: Path, monkeypatch) -> None:
    import dualteacher.experiments.compare

    calls = []
    monkeypatch.setattr(dualteacher.experiments.compare, "compare", lambda opts: calls.append(opts) or Comparison({}, []))
    cm = script("compare_methods")
    monkeypatch.setattr(cm, "ensure_digit_scenes", lambda: tmp_path)
    assert cm.main(["--seeds", "0", "--labeled", "1/16", "--report-only", "train.amp=off"]) == 0
    opts = calls[0]
    assert opts.data == tmp_path and opts.fractions == ["1/16"] and opts.seeds == [0] and opts.report_only
    assert opts.budgets == ["iterations", "time"] and opts.out == Path("benchmarks/results/compare")
    assert opts.runs == Path("runs/compare") and opts.overrides == ["train.amp=off"]
    assert opts.warmup == WARMUP_ITERATIONS and opts.iterations is None and opts.minutes is None  # compare's defaults
    assert cm.main(["--minutes", "2", "--warmup", "0", "--report-only"]) == 0
    assert calls[1].minutes == 2 and calls[1].iterations is None and calls[1].warmup == 0


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


def test_run_diagnostics_reads_losses_coverage_and_teacher_margin(tiny_data, tmp_path: Path) -> None:
    diagnostics = script("run_diagnostics")
    for method in ("dual_teacher", "supervised"):  # threshold 0: every pixel gets a pseudo-label from the first step
        extra = {"method__threshold": 0.0} if method == "dual_teacher" else {}
        train(load_config(None, tiny_overrides(tiny_data, tmp_path / method, method, **extra)), progress=False)
    dual, supervised = (diagnostics.diagnose(tmp_path / m) for m in ("dual_teacher", "supervised"))
    assert set(dual["terms"]) == {"loss_icl", "loss_mix"} and dual["iterations"] == 6
    assert dual["unlabeled_over_supervised"] > 0 and set(dual["confident"]) == {1, 4, 6}
    assert all(0 <= share <= 1 for share in dual["confident"].values())
    assert isinstance(dual["teacher_minus_student"], float)
    assert supervised["terms"] == {} and supervised["teacher_minus_student"] is None
    text = diagnostics.table([dual, supervised])
    assert "| dual_teacher | " in text and "| supervised | " in text and text.count("| – |") >= 2
    with pytest.raises(FileNotFoundError):
        diagnostics.diagnose(tmp_path / "nothing")


def test_the_ablation_keeps_other_splits_and_warm_ups_apart(tiny_data, tmp_path: Path) -> None:
    ablation = script("dual_teacher_ablation")
    assert ablation.experiment_key("1/32", 0, None) == ""  # the committed rows keep their file
    assert ablation.experiment_key("1/16", 2, None) == "_1-16_seed2"
    first, second = tmp_path / "a" / "warmup", tmp_path / "b" / "warmup"
    for run in (first, second):
        run.mkdir(parents=True)
    keys = {ablation.experiment_key("1/32", 1, run) for run in (first, second)}
    assert len(keys) == 2 and all(k.startswith("_1-32_seed1_after_warmup_") for k in keys)
    save_config(load_config(None, tiny_overrides(tiny_data, first)), first / "config.yaml")
    ablation.check_warm_up(first, tiny_data["labeled"])
    with pytest.raises(SystemExit, match="not on labeled_other"):
        ablation.check_warm_up(first / "last.safetensors", "labeled_other")
    with pytest.raises(SystemExit, match="no .*config.yaml"):
        ablation.check_warm_up(second, tiny_data["labeled"])


def test_gpu_check_script_parses_and_its_compare_call_is_valid() -> None:
    path = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    text = path.read_text()
    grid = re.search(r"^grid=\((.*?)\)$", text, re.S | re.M).group(1).replace('"', "").split()
    overrides = re.search(r"^overrides=\((.*?)\)$", text, re.M).group(1).split()
    values = {"$warmup": "900", "$iterations": "2100", "${seeds[@]}": "0", "${fractions[@]}": "1/8", "$out/compare_gpu": "o", "$out/runs": "r"}
    args = build_parser().parse_args(["compare", "--data", "d", *[values.get(a, a) for a in grid], *overrides])
    assert args.budget == ["iterations"] and args.variants == ["dual_teacher_persistent"]
    assert args.warmup == 900 and args.iterations == 2100
    check_options(CompareOptions(data=Path("d"), out=Path("o"), fractions=args.labeled, variants=args.variants,
                                 overrides=args.overrides, warmup=args.warmup))
    cfg = load_config(None, overrides)
    assert cfg.train.amp == "off" and cfg.train.eval_every > 1000
    assert text.count("-m dualteacher compare --data") == 2


def test_dual_teacher_ablation_removes_one_part_per_row_and_ends_at_mean_teacher(tiny_data, tmp_path: Path) -> None:
    ablation = script("dual_teacher_ablation")
    configs = {
        name: ablation.recipe_config(tiny_data["root"], "l", "u", method, tmp_path, 400, 0, overrides)
        for name, (method, overrides) in ablation.ROWS.items()
    }
    full, *removed, mean_teacher = configs.values()
    assert full.method.name == "dual_teacher" and mean_teacher.method.name == "mean_teacher"
    fields = ("student_drop_path", "icl_weight", "mixings", "num_teachers", "restart_per_shift")
    for row in removed:  # each row differs from the full method in the settings of one part only
        changed = {f for f in fields if getattr(row.method, f) != getattr(full.method, f)}
        assert changed and len(changed) <= 3 and row.train == full.train and row.optim == full.optim
    assert {f for r in removed for f in fields if getattr(r.method, f) != getattr(full.method, f)} == set(fields)
