"""The benchmark scripts: every script under benchmarks/ runs its main path at tiny size (the slow
tier: each trains a few iterations on tiny generated scenes), imports and parses its options (the
fast tier), and the GPU check's calls are valid commands of the scripts and of the CLI."""

import ast
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dualteacher.cli import build_parser
from dualteacher.config import load_config, save_config
from dualteacher.experiments.compare import CompareOptions, Comparison
from dualteacher.experiments.compare.options import check_options
from dualteacher.experiments.recipe import WARMUP_ITERATIONS
from dualteacher.inference.model import load_model
from dualteacher.methods.dual_teacher import DualTeacherSettings
from dualteacher.training.loop import train

from conftest import tiny_overrides

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
SCRIPTS = [
    "compare_methods",
    "dual_teacher_ablation",
    "dual_teacher_length",
    "dual_teacher_selection",
    "protocol_study",
    "pseudo_label_quality",
    "run_diagnostics",
    "sliding_window",
    "step_cost",
]
SMOKE_TESTS = {  # every script under benchmarks/ and the test that runs its main path
    "compare_methods.py": "test_compare_methods_compares_on_the_data_it_is_given",
    "dual_teacher_ablation.py": "test_dual_teacher_ablation_trains_its_rows_once_on_the_data_it_is_given",
    "dual_teacher_length.py": "test_dual_teacher_length_trains_each_shift_on_the_data_it_is_given",
    "dual_teacher_selection.py": "test_dual_teacher_selection_trains_on_held_out_train_scenes_and_decides",
    "protocol_study.py": "test_protocol_study_measures_each_kind_of_row_at_tiny_size",
    "pseudo_label_quality.py": "test_pseudo_label_quality_at_threshold_zero_is_pixel_accuracy",
    "run_diagnostics.py": "test_run_diagnostics_reads_losses_coverage_and_teacher_margin",
    "sliding_window.py": "test_sliding_window_benchmark_smoke_times_each_setting_and_finds_them_equal",
    "step_cost.py": "test_step_cost_times_every_row_at_tiny_size",
    "gpu_check.sh": "test_gpu_check_script_parses_and_its_calls_are_valid",
}
TINY_RECIPE = [
    "model.weights=null",
    "model.decoder_channels=32",
    "data.crop_size=48",
    "data.val_batch_size=8",
    "data.workers=0",
    "train.batch_size=4",
    "train.unlabeled_batch_size=4",
]
"""After the recipe's settings: a small random-init model on the 48 px tiny scenes."""


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def search(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """The first match of ``pattern`` in ``text``; the test fails, naming the pattern, when there is none."""
    match = re.search(pattern, text, flags)
    assert match, f"no {pattern!r} in the text"
    return match


def test_compare_methods_is_dualteacher_compare_on_the_digit_scenes(tmp_path: Path, monkeypatch) -> None:
    import dualteacher.experiments.compare

    calls: list[CompareOptions] = []

    def record(opts: CompareOptions) -> Comparison:
        calls.append(opts)
        return Comparison({}, [])

    monkeypatch.setattr(dualteacher.experiments.compare, "compare", record)
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


@pytest.mark.slow
def test_pseudo_label_quality_at_threshold_zero_is_pixel_accuracy(tiny_data, tmp_path: Path, capsys) -> None:
    train(load_config(None, tiny_overrides(tiny_data, tmp_path, "dual_teacher")), progress=False)
    module = script("pseudo_label_quality")
    quality = module.quality
    checkpoint = tmp_path / "last.safetensors"
    everything = quality(checkpoint, "teacher1", tiny_data["unlabeled"], 0.0, None)
    assert everything["confident_share"] == pytest.approx(1.0)
    assert all(c == pytest.approx(1.0) for c in everything["coverage"] if c > 0)
    metrics = load_model(checkpoint, "teacher1").eval_dataset(split=tiny_data["unlabeled"])
    assert everything["confident_accuracy"] == pytest.approx(metrics.pixel_accuracy, abs=1e-6)
    strict = quality(checkpoint, "teacher1", tiny_data["unlabeled"], 0.99, None)
    assert strict["confident_share"] < everything["confident_share"]

    capsys.readouterr()
    argv = [
        str(checkpoint),
        "--roles",
        "student",
        "teacher1",
        "teacher2",
        "--split",
        tiny_data["unlabeled"],
        "--threshold",
        "0",
        "--limit",
        "4",
    ]
    assert module.main(argv) == 0
    printed = capsys.readouterr().out
    assert f"on {tiny_data['unlabeled']} (4 images), threshold 0.0" in printed
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in printed.splitlines() if line.startswith("| ")}
    assert set(rows) == {"network", "student", "teacher1", "teacher2"}
    assert rows["teacher1"][0] == "1.000"  # threshold 0: every pixel is confident
    assert len(rows["student"]) == 3 + len(everything["classes"])  # three overall figures, one cell per class


@pytest.mark.slow
def test_run_diagnostics_reads_losses_coverage_and_teacher_margin(tiny_data, tmp_path: Path, capsys) -> None:
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

    capsys.readouterr()
    rows = tmp_path / "rows.json"
    assert diagnostics.main([str(tmp_path / "dual_teacher"), str(tmp_path / "supervised"), "--json", str(rows)]) == 0
    assert capsys.readouterr().out.strip() == text
    written = json.loads(rows.read_text())
    assert [r["run"] for r in written] == ["dual_teacher", "supervised"]
    assert written[0]["terms"] == pytest.approx(dual["terms"]) and written[0]["iterations"] == 6


def test_the_ablation_keeps_other_splits_and_warm_ups_apart(tiny_data, tmp_path: Path) -> None:
    ablation = script("dual_teacher_ablation")
    assert ablation.experiment_key("1/32", 0, None) == ""  # the committed rows keep their file
    assert ablation.experiment_key("1/16", 2, None) == "_1-16_seed2"
    first, second = tmp_path / "a" / "warmup", tmp_path / "b" / "warmup"
    for run in (first, second):
        run.mkdir(parents=True)
    keys = {ablation.experiment_key("1/32", 1, run) for run in (first, second)}
    assert len(keys) == 2 and all(k.startswith("_1-32_seed1_after_warmup_") for k in keys)
    on_data = {ablation.experiment_key("1/32", 0, None, tmp_path / d / "data") for d in "ab"}  # another dataset
    assert len(on_data) == 2 and all(k.startswith("_1-32_seed0_on_data_") for k in on_data)
    with_overrides = {ablation.experiment_key("1/32", 0, None, None, [o]) for o in ("optim.lr=0.1", "optim.lr=0.2")}
    assert len(with_overrides) == 2 and all(k.startswith("_1-32_seed0_with_") for k in with_overrides)
    assert ablation.experiment_key("1/32", 0, None, None, []) == ""
    save_config(load_config(None, tiny_overrides(tiny_data, first)), first / "config.yaml")
    ablation.check_warm_up(first, tiny_data["labeled"])
    with pytest.raises(SystemExit, match="not on labeled_other"):
        ablation.check_warm_up(first / "last.safetensors", "labeled_other")
    with pytest.raises(SystemExit, match="no .*config.yaml"):
        ablation.check_warm_up(second, tiny_data["labeled"])


def test_gpu_check_script_parses_and_its_calls_are_valid() -> None:
    path = BENCHMARKS / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    text = path.read_text()
    # the grid: `dualteacher compare` with the script's options and overrides
    grid = search(r"^grid=\((.*?)\)$", text, re.S | re.M).group(1).replace('"', "").split()
    overrides = search(r"^overrides=\((.*?)\)$", text, re.M).group(1).split()
    values = {
        "$warmup": "900",
        "$iterations": "2100",
        "${seeds[@]}": "0",
        "${fractions[@]}": "1/8",
        "$out/compare_gpu": "o",
        "$out/runs": "r",
    }
    args = build_parser().parse_args(["compare", "--data", "d", *[values.get(a, a) for a in grid], *overrides])
    assert args.budget == ["iterations"] and args.variants == ["dual_teacher_persistent"]
    assert args.warmup == 900 and args.iterations == 2100
    check_options(
        CompareOptions(
            data=Path("d"),
            out=Path("o"),
            fractions=args.labeled,
            variants=args.variants,
            overrides=args.overrides,
            warmup=args.warmup,
        )
    )
    cfg = load_config(None, overrides)
    assert cfg.train.amp == "off" and cfg.train.eval_every > 1000
    assert text.count("-m dualteacher compare --data") == 2

    # the step costs: each setting of the loop is a valid step_cost.py command with a valid model
    settings = search(r"for setting in (.*?); do", text, re.S).group(1).replace("\\\n", " ")
    command = search(r"benchmarks/step_cost\.py (.*?)\n\s*echo", text, re.S).group(1).replace("\\\n", " ")
    parser = script("step_cost").build_parser()
    parsed = []
    for setting in re.findall(r'"([^"]*)"', settings):
        arch, encoder, amp, *layout = setting.split()
        values = {'"$arch"': arch, '"$encoder"': encoder, '"$amp"': amp, "${layout:-}": " ".join(layout)}
        argv = " ".join(values.get(a, a) for a in command.split()).split()
        step_args = parser.parse_args(argv)
        assert step_args.overrides == [] and step_args.size == 512 and step_args.batch == 8
        load_config(None, [f"model.arch={arch}", f"model.encoder={encoder}", f"train.amp={amp}"])
        parsed.append((step_args.arch, step_args.amp, step_args.channels_last))
    assert parsed == [
        ("deeplabv3plus", "off", False),
        ("deeplabv3plus", "bf16", False),
        ("deeplabv3plus", "bf16", True),
        ("segformer", "bf16", False),
    ]

    # the python -c snippets import what exists
    for snippet in re.findall(r'"\$python" -c "([^"]*)"', text):
        for node in ast.walk(ast.parse(snippet)):
            if isinstance(node, ast.ImportFrom):
                assert node.module, snippet
                module = importlib.import_module(node.module)
                assert all(hasattr(module, alias.name) for alias in node.names), snippet
    # the CUDA and torchrun tests it runs exist and hold tests that -k "cuda or torchrun" selects
    tests = search(r'-k "cuda or torchrun" \\\n\s*(.*?) >', text).group(1).split()
    root = BENCHMARKS.parent
    for test_file in tests:
        assert re.search(r"def test_\w*(cuda|torchrun)", (root / test_file).read_text()), test_file


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


def test_every_benchmark_script_has_a_smoke_test() -> None:
    on_disk = {path.name for path in BENCHMARKS.iterdir() if path.suffix in {".py", ".sh"}}
    assert on_disk == set(SMOKE_TESTS), "a script under benchmarks/ needs a smoke test here (SMOKE_TESTS)"
    assert {f"{name}.py" for name in SCRIPTS} == {name for name in on_disk if name.endswith(".py")}
    assert all(callable(globals().get(test)) for test in SMOKE_TESTS.values())


@pytest.mark.parametrize("name", [s for s in SCRIPTS if s != "compare_methods"])  # its --help is compare's
def test_each_script_imports_and_shows_its_help(name: str, capsys) -> None:
    """The fast tier's guard: a moved module or a renamed import breaks this, not only the slow run."""
    with pytest.raises(SystemExit) as stopped:
        script(name).main(["--help"])
    assert stopped.value.code == 0 and capsys.readouterr().out.startswith("usage: ")


@pytest.mark.slow
def test_step_cost_times_every_row_at_tiny_size(capsys) -> None:
    step_cost = script("step_cost")
    argv = [
        "--size",
        "32",
        "--batch",
        "2",
        "--warmup",
        "0",
        "--repeats",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "model.decoder_channels=16",
        "model.weights=null",
    ]
    assert step_cost.main(argv) == 0
    printed = capsys.readouterr().out
    assert "deeplabv3plus / tu-tf_efficientnet_lite0, 32x32, batch 2+2, device cpu, amp off" in printed
    rows = dict(re.findall(r"^\| (\w[^|]*?) +\| +([\d.]+) \|", printed, re.M))
    assert set(rows) == {
        "supervised step",
        "mean_teacher step",
        "dual_teacher step",
        "teacher forward (no grad, B)",
        "student fwd+bwd (3B)",
        "sum of necessary passes",
    }
    assert all(float(ms) > 0 for ms in rows.values())
    necessary = float(rows["teacher forward (no grad, B)"]) + float(rows["student fwd+bwd (3B)"])
    assert float(rows["sum of necessary passes"]) == pytest.approx(necessary, abs=0.11)
    ratio = float(search(r"Dual Teacher step / necessary passes: ([\d.]+)", printed).group(1))
    assert ratio == pytest.approx(float(rows["dual_teacher step"]) / necessary, abs=0.01)
    assert re.search(r"input pipeline: \d+ images/s with 0 workers; .* headroom [\d.]+x", printed)


@pytest.mark.slow
def test_compare_methods_compares_on_the_data_it_is_given(tiny_data, tmp_path: Path) -> None:
    data = Path(shutil.copytree(tiny_data["root"], tmp_path / "data"))  # compare writes split lists into it
    out = tmp_path / "out"
    argv = [
        "--data",
        str(data),
        "--methods",
        "supervised",
        "dual_teacher",
        "--seeds",
        "0",
        "--labeled",
        "1/8",
        "--budget",
        "iterations",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
        *TINY_RECIPE,
        "train.probe_images=2",
    ]
    assert script("compare_methods").main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"supervised", "dual_teacher"} and summary["budget"]["iterations"] == 2
    assert all(0 <= cells["1/8"]["mean"] <= 1 for cells in summary["methods"].values())
    assert "| dual_teacher | 1/8 |" in (out / "table.md").read_text()


@pytest.mark.slow
def test_dual_teacher_length_trains_each_shift_on_the_data_it_is_given(tiny_data, tmp_path: Path) -> None:
    data = Path(shutil.copytree(tiny_data["root"], tmp_path / "data"))  # compare writes split lists into it
    out = tmp_path / "out"
    argv = [
        "shift",
        "--data",
        str(data),
        "--seeds",
        "0",
        "--labeled",
        "1/8",
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
        *TINY_RECIPE,
        "train.probe_images=2",
    ]
    assert script("dual_teacher_length").main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    study = script("dual_teacher_length")
    assert set(summary["methods"]) == {"dual_teacher", *(f"dual_teacher+shift={s}" for s in study.SHIFTS)}
    assert all(0 <= cells["1/8"]["mean"] <= 1 for cells in summary["methods"].values())
    assert summary["recipe"]["method_settings"]["dual_teacher+shift=150"] == ["method.shift=50", "method.shift=150"]


@pytest.mark.slow
def test_dual_teacher_ablation_trains_its_rows_once_on_the_data_it_is_given(
    tiny_data, tmp_path: Path, monkeypatch, capsys
) -> None:
    ablation = script("dual_teacher_ablation")
    data = Path(shutil.copytree(tiny_data["root"], tmp_path / "data"))  # the split lists are written into it
    out = tmp_path / "out"
    argv = [
        *TINY_RECIPE,
        "--data",
        str(data),
        "--labeled",
        "1/8",
        "--iterations",
        "2",
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "runs"),
        "--rows",
        "Dual Teacher",
        "- switching",
    ]
    assert ablation.main(argv) == 0
    first = capsys.readouterr().out
    [results] = out.glob("ablation_2_1-8_seed0_on_data_*_with_*.json")
    rows = json.loads(results.read_text())
    assert list(rows) == ["Dual Teacher (the paper's settings)", "- switching (one persistent teacher)"]
    assert all(0 <= r["miou"] <= 1 and len(r["curve"]) == 1 and r["train_seconds"] > 0 for r in rows.values())
    assert rows["- switching (one persistent teacher)"]["overrides"] == [
        "dual_teacher",
        *ablation.ONE_TEACHER,
        *TINY_RECIPE,
    ]
    table = re.findall(r"^\|.*\|$", first, re.M)  # training prints its data check and evaluations around it
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| Dual Teacher (the paper's settings)",
        "| - switching (one persistent teacher)",
    ]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(ablation, "train", no_training)
    assert ablation.main(argv) == 0 and re.findall(r"^\|.*\|$", capsys.readouterr().out, re.M) == table


@pytest.mark.slow
def test_protocol_study_measures_each_kind_of_row_at_tiny_size(tmp_path: Path, capsys) -> None:
    study = script("protocol_study")
    rows = [
        "oracle v3 128 px",
        "classifier 64 px",
        "train 64 px, all labelled, no dropout, no rescaling",
        "train 128 px, 1/16 labelled",
    ]
    argv = [
        "model.weights=null",
        "model.decoder_channels=32",
        "data.workers=0",
        "data.val_batch_size=8",
        "train.batch_size=4",
        "--iterations",
        "2",
        "--scenes",
        "32",
        "8",
        "--out",
        str(tmp_path / "out"),
        "--runs",
        str(tmp_path / "runs"),
        "--rows",
        *rows,
    ]
    assert study.main(argv) == 0
    assert study.results_name(None, [3000, 500], []) == "study.json"  # the study as designed keeps its file
    [results] = (tmp_path / "out").glob("study_*.json")
    done = json.loads(results.read_text())
    assert list(done) == [r.name for r in study.ROWS if any(r.name.startswith(p) for p in rows)]
    oracle, classifier, *trained = done.values()
    assert set(oracle) == {"miou", "foreground", "seconds"} and 0.5 < oracle["miou"] <= 1
    assert set(classifier) == {"accuracy", "seconds"} and 0 <= classifier["accuracy"] <= 1
    assert all(set(r) == {"miou", "last_third_range", "train_seconds", "seconds"} for r in trained)
    assert all(0 <= r["miou"] <= 1 for r in trained)
    assert sorted(p.name for p in (tmp_path / "runs" / results.stem).iterdir()) == sorted(
        "".join(c if c.isalnum() else "_" for c in name) for name in list(done)[2:]
    )
    printed = re.findall(r"^\| (.*?) \| ", capsys.readouterr().out, re.M)
    assert printed == list(done)


def test_sliding_window_benchmark_smoke_times_each_setting_and_finds_them_equal(capsys) -> None:
    bench = script("sliding_window")
    assert bench.main(["--smoke", "--window-batch", "2", "8"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if re.match(r"\| \d", line)]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(1, 8), (2, 4), (8, 1)]  # 8 windows: passes per setting
    assert all(float(r[2]) > 0 and float(r[4].strip(" x")) > 0 for r in rows)  # seconds and speed-up
    assert all(float(r[5]) < 1e-5 and r[6].strip() == "0.0000%" for r in rows)  # the same result


def test_dual_teacher_length_reading_gives_the_gap_and_the_time_to_the_others_final(tmp_path: Path) -> None:
    study = script("dual_teacher_length")
    summaries = tmp_path / "summaries"
    summaries.mkdir()

    def write(method: str, seed: int, mious: list[float], seconds_per_eval: float) -> None:
        warmup = {"name": "w", "iterations": 300, "train_seconds": 30.0}
        curve = [[10.0 * (i + 1), m] for i, m in enumerate((0.1, 0.9, 0.1))]  # the warm-up's; 0.9 reaches any target
        curve += [[30.0 + seconds_per_eval * (i + 1), m] for i, m in enumerate(mious)]
        (summaries / f"{method}{seed}.json").write_text(
            json.dumps(
                {
                    "variant": method,
                    "seed": seed,
                    "budget": "iterations",
                    "iterations": 100 * len(curve),
                    "student_miou": mious[-1],
                    "train_seconds": curve[-1][0],
                    "s_per_it": seconds_per_eval / 100,
                    "curve": curve,
                    "warmup": warmup,
                }
            )
        )

    ramp = [0.2 + 0.01 * i for i in range(27)]  # 0.20 at iteration 400 ... 0.46 at 3000
    write("mean_teacher", 0, ramp, 10.0)
    write("dual_teacher", 0, [m + 0.05 + 0.001 * i for i, m in enumerate(ramp)], 20.0)  # the lead grows; twice as slow
    write("supervised", 0, [0.2] * 27, 5.0)
    write("supervised", 1, [0.4] * 27, 5.0)
    (summaries / "1-32_seed0_supervised_warmup300.json").write_text(json.dumps({"budget": "warmup"}))
    text = study.reading(tmp_path)
    assert (tmp_path / "curves.png").stat().st_size > 0 and (tmp_path / "reading.md").read_text() == text
    assert "| 0 | +0.0560 | +0.0660 | +0.0760 |" in text  # at iterations 1000, 2000, 3000 (evaluations 7, 17, 27)
    # Dual Teacher (0.25 + 0.011 j at its evaluation j = 0, 1, ... after the warm-up) first reaches
    # Mean Teacher's final 0.46 at j = 20: 21 evaluations of 20 s, 420 s; the warm-up's 0.9 does
    # not count. Mean Teacher never reaches Dual Teacher's 0.536
    assert "| 0 | 420 | never |" in text
    assert "| dual_teacher | 0 | 0.5360 | 0.5140 | 3000 | 0.200 | 540 |" in text  # mean of 0.25 + 0.011 j, j = 22..26
    assert "| supervised | mean | 0.3000 ± 0.1414 | 0.3000 | | | |" in text
    assert "| mean |" not in text.split("minus Mean Teacher")[1]  # one seed: no mean of the gaps
    write("mean_teacher", 1, ramp, 10.0)
    write("dual_teacher", 1, [m - 0.02 for m in ramp], 20.0)  # seed 1: 0.02 behind everywhere
    text = study.reading(tmp_path)
    assert "| 1 | -0.0200 | -0.0200 | -0.0200 |" in text
    assert "| mean | +0.0180 | +0.0230 | +0.0280 |" in text  # (0.056 - 0.02) / 2, ...
    write("mean_teacher", 1, ramp[:5], 10.0)
    (summaries / "mean_teacher1.json").write_text(
        (summaries / "mean_teacher1.json").read_text().replace('"iterations": 800', '"iterations": 900')
    )
    with pytest.raises(ValueError, match="8 evaluations for 900 iterations"):
        study.reading(tmp_path)


def test_the_selection_split_holds_out_train_scenes_only_and_is_one_fixed_draw(tiny_data, tmp_path: Path) -> None:
    selection = script("dual_teacher_selection")
    root = Path(tiny_data["root"])
    before = {p: p.stat().st_mtime_ns for p in (root / "splits").iterdir()}
    assert selection.write_selection_splits(root, tmp_path / "splits", 16) == (48, 16)
    train = (tmp_path / "splits" / "train.txt").read_text().split()
    held_out = (tmp_path / "splits" / "val.txt").read_text().split()
    source_train = (root / "splits" / "train.txt").read_text().split()
    source_val = (root / "splits" / "val.txt").read_text().split()
    assert sorted(train + held_out) == sorted(source_train) and not set(held_out) & set(train)
    assert not set(held_out) & set(source_val)  # disjoint from the val scenes results are reported on
    assert {p: p.stat().st_mtime_ns for p in (root / "splits").iterdir()} == before  # the dataset is only read
    assert selection.write_selection_splits(root, tmp_path / "splits", 16) == (48, 16)  # the same draw again
    (tmp_path / "splits" / "val.txt").write_text("\n".join(reversed(held_out)) + "\n")
    with pytest.raises(ValueError, match="is not this study's draw"):
        selection.write_selection_splits(root, tmp_path / "splits", 16)
    with pytest.raises(ValueError, match="cannot hold out 40"):
        selection.write_selection_splits(root, tmp_path / "other", 40)


def test_the_selection_decision_needs_a_win_at_every_fraction() -> None:
    selection = script("dual_teacher_selection")

    def cell(*seeds: float) -> dict:
        return {"mean": sum(seeds) / len(seeds), "seeds": {str(i): m for i, m in enumerate(seeds)}}

    candidate = "dual_teacher+student_drop_path=0"
    summary = {
        "methods": {
            "dual_teacher": {"1/32": cell(0.40, 0.50, 0.60), "1/16": cell(0.60, 0.65, 0.70)},
            candidate: {"1/32": cell(0.45, 0.55, 0.58), "1/16": cell(0.61, 0.66, 0.71)},
        }
    }
    text = selection.decision(summary)
    assert (
        f"| {candidate} | 0.527 (0.450, 0.550, 0.580), +2.7, wins 2/3 | 0.660 (0.610, 0.660, 0.710), +1.0, wins 3/3 |"
        in text
    )
    assert f"- {candidate}: **passes**" in text
    summary["methods"][candidate]["1/16"] = cell(0.59, 0.65, 0.70)  # loses on the mean at one fraction
    assert f"- {candidate}: **fails**" in selection.decision(summary)
    summary["methods"][candidate]["1/16"] = cell(0.59, 0.65, 0.70, 0.99)  # an unplanned seed 3 lifts the mean
    assert summary["methods"][candidate]["1/16"]["mean"] > 0.65
    assert f"- {candidate}: **fails**" in selection.decision(summary)  # the planned seeds' mean decides
    summary["methods"]["mean_teacher"] = summary["methods"]["dual_teacher"]
    assert "- mean_teacher:" not in selection.decision(summary)  # another method is shown, never a candidate
    summary["methods"][candidate]["1/16"] = cell(0.99, 0.99)  # seed 2 not finished
    assert f"- {candidate}: **not all planned runs finished**" in selection.decision(summary)
    early = {"dual_teacher": {"1/32": cell(0.50)}, candidate: {"1/32": cell(0.55), "1/16": cell(0.4, 0.4, 0.4)}}
    text = selection.decision({"methods": early})  # one reference seed so far: no verdict, every cell shown
    assert f"- {candidate}: **not all planned runs finished**" in text and "0.400 (0.400, 0.400, 0.400)" in text
    assert f"- {candidate}: **passes**" in selection.decision({"methods": early}, ["1/32"], [0])
    with pytest.raises(ValueError, match="no finished dual_teacher"):
        selection.decision({"methods": {candidate: summary["methods"][candidate]}})


@pytest.mark.slow
def test_dual_teacher_selection_trains_on_held_out_train_scenes_and_decides(tiny_data, tmp_path: Path) -> None:
    selection = script("dual_teacher_selection")
    out = tmp_path / "out"
    argv = ["run", "--data", tiny_data["root"], "--held-out", "16", "--out", str(out), "--seeds", "0"]
    argv += ["--labeled", "1/8", "--iterations", "2", "--warmup", "1", "--runs", str(tmp_path / "runs")]
    assert selection.main([*argv, *TINY_RECIPE, "train.probe_images=2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"dual_teacher", *selection.CANDIDATES}
    config = load_config(next((tmp_path / "runs").glob("*student_drop_path=0*")) / "config.yaml")
    assert config.data.splits_dir == str(out / "splits") and config.data.val_split == "val"
    assert isinstance(config.method, DualTeacherSettings) and config.method.student_drop_path == 0
    labeled = (out / "splits" / "labeled_1-8_seed0.txt").read_text().split()
    assert len(labeled) == 6 and not set(labeled) & set((out / "splits" / "val.txt").read_text().split())
    assert selection.main(["decision", "--out", str(out), "--labeled", "1/8", "--seeds", "0"]) == 0
    assert re.search(r"- dual_teacher\+student_drop_path=0: \*\*(passes|fails)\*\*", (out / "decision.md").read_text())


def test_dual_teacher_length_shift_reading_compares_each_shift_with_the_recipes(tmp_path: Path) -> None:
    study = script("dual_teacher_length")
    summaries = tmp_path / "summaries"
    summaries.mkdir()

    def write(variant: str, seed: int, mious: list[float]) -> None:
        curve = [[10.0 * (i + 1), m] for i, m in enumerate(mious)]
        (summaries / f"{variant}{seed}.json").write_text(
            json.dumps(
                {"variant": variant, "seed": seed, "budget": "iterations", "iterations": 100 * len(curve)}
                | {"student_miou": mious[-1], "curve": curve}
            )
        )

    write("dual_teacher", 0, [0.1] * 7 + [0.4, 0.5, 0.6])
    write("dual_teacher", 1, [0.1] * 9 + [0.7])
    write("dual_teacher+shift=350", 0, [0.1] * 7 + [0.5, 0.5, 0.5])
    write("dual_teacher+shift=labeled_pass", 2, [0.1] * 9 + [0.3])  # no 50-iteration run of seed 2: no difference
    (summaries / "1-32_seed0_supervised_warmup300.json").write_text(json.dumps({"budget": "warmup"}))
    text = study.shift_reading(tmp_path)
    assert (tmp_path / "reading.md").read_text() == text
    rows = text.splitlines()
    assert rows[0].startswith("| shift, iterations | seed 0 | seed 1 | seed 2 | seeds | mean |")
    assert rows[2] == "| one labelled pass (11) | – | – | 0.3000 | 1 | 0.3000 | 0.1667 |  |"
    assert rows[3] == "| 50 (the recipe's) | 0.6000 | 0.7000 | – | 2 | 0.6500 | 0.4000 |  |"  # last 3: 0.5 and 0.3
    assert rows[4] == "| 350 | 0.5000 | – | – | 1 | 0.5000 | 0.5000 | -0.1000 (1) |"
    assert "Mean Teacher from the same warm-ups" not in text  # none trained: no pairing
    write("mean_teacher", 0, [0.1] * 9 + [0.65])
    write("mean_teacher", 2, [0.1] * 9 + [0.65])  # no 50-iteration run of seed 2: left out
    text = study.shift_reading(tmp_path)
    assert "| 0 | 0.6500 | 0.6000 | -0.0500 |\n| mean | | | -0.0500 |" in text
    assert "| 2 |" not in text.split("Mean Teacher from the same warm-ups")[1]
    (summaries / "dual_teacher0.json").write_text(
        (summaries / "dual_teacher0.json").read_text().replace('"iterations": 1000', '"iterations": 900')
    )
    with pytest.raises(ValueError, match="10 evaluations for 900 iterations"):
        study.shift_reading(tmp_path)
    with pytest.raises(FileNotFoundError, match="run it first"):
        study.shift_reading(tmp_path / "empty")
