"""`dualteacher compare`: the summary's schema, resume, time-to-accuracy, --minutes, early errors."""

import json
import shutil
import types
from pathlib import Path

import pytest
import torch
from PIL import Image

from dualteacher.cli import main
from dualteacher.config import ConfigError
from dualteacher.data.core import DataError
from dualteacher.experiments import compare as cmp
from dualteacher.experiments import probe
from dualteacher.experiments.compare import CompareOptions, compare, planning, running
from dualteacher.experiments.compare import options as cmp_options
from dualteacher.experiments.compare.grid import Plan, Run
from dualteacher.experiments.compare.summary import summarize, time_to_accuracy
from dualteacher.experiments.compare.table import write_table
from dualteacher.experiments.recipe import ITERATIONS, WARMUP_ITERATIONS, Adaptation, for_method

from scenes import make_scenes

TINY = [
    "model.weights=null",
    "model.decoder_channels=32",
    "data.workers=0",
    "train.batch_size=4",
    "train.unlabeled_batch_size=4",
    "train.log_every=1",
    "train.probe_images=4",
    "optim.lr=0.002",
]
CELL_KEYS = {"mean", "std", "seeds", "s_per_iteration", "train_seconds", "time_to_accuracy", "per_seed"}


@pytest.fixture
def data(tiny_data, tmp_path: Path) -> Path:
    """A private copy of the tiny digit scenes (compare writes split lists into it)."""
    return Path(shutil.copytree(tiny_data["root"], tmp_path / "data"))


def options(data: Path, out: Path, **extra) -> CompareOptions:
    return CompareOptions(
        **{
            "data": data,
            "out": out,
            "fractions": ["1/8"],
            "seeds": [0],
            "iterations": 4,
            "methods": ["supervised", "dual_teacher"],
            "overrides": TINY,
            "warmup": 0,
            **extra,
        }
    )


def no_training(*args, **kwargs):
    raise AssertionError("a run was started")


def test_time_to_accuracy_is_the_first_evaluation_reaching_the_target() -> None:
    curve = [[10.0, 0.1], [20.0, 0.3], [30.0, 0.25], [40.0, 0.4]]
    assert time_to_accuracy(curve, 0.28) == 20.0
    assert time_to_accuracy(curve, 0.4) == 40.0
    assert time_to_accuracy(curve, 0.41) is None


def test_seed_mean_curve_compares_runs_at_equal_training_seconds() -> None:
    from dualteacher.experiments.plots import mean_curve

    short = [[10.0, 0.2], [20.0, 0.4]]  # an equal-wall-clock run with fewer, slower evaluations
    long = [[5.0, 0.1], [10.0, 0.3], [15.0, 0.5], [20.0, 0.5], [25.0, 0.6]]
    curve = mean_curve([short, long])
    assert [t for t, _ in curve] == [10.0, 15.0, 20.0]  # the window both runs cover
    assert [m for _, m in curve] == pytest.approx([0.25, 0.4, 0.45])  # short is 0.3 at 15 s
    assert mean_curve([short]) == [(10.0, 0.2), (20.0, 0.4)]
    same_length = mean_curve([short, [[12.0, 0.4], [24.0, 0.6]]])  # equal iterations: point by point
    assert [t for t, _ in same_length] == [11.0, 22.0] and [m for _, m in same_length] == pytest.approx([0.3, 0.5])


def test_summary_of_hand_made_runs(tmp_path: Path) -> None:
    def run(variant: str, seed: int, curve: list[list[float]], budget: str = "iterations") -> dict:
        return {
            "variant": variant,
            "seed": seed,
            "fraction": "1/8",
            "budget": budget,
            "iterations": 10,
            "student_miou": curve[-1][1],
            "train_seconds": curve[-1][0],
            "s_per_it": curve[-1][0] / 10,
            "peak_memory_mb": 100.0,
            "device": "cpu",
            "curve": curve,
        }

    results = [
        run("supervised", 0, [[5, 0.2], [10, 0.4]]),
        run("supervised", 1, [[5, 0.2], [10, 0.6]]),  # target 0.5
        run("dual_teacher", 0, [[8, 0.5], [16, 0.5]]),
        run("dual_teacher", 1, [[8, 0.3], [16, 0.7]]),
        run("supervised_all", 0, [[4, 0.9]]),
        run("unimatch", 0, [[5, 0.3], [10, 0.45]]),  # one seed: measured against supervised's seed 0 (0.4)
        run("fixmatch", 0, [[5, 0.1], [10, 0.2]]),
        run("fixmatch", 2, [[5, 0.3], [10, 0.9]]),  # seed 2: no supervised
    ]
    opts = CompareOptions(data=tmp_path, out=tmp_path, fractions=["1/8"], methods=["supervised", "dual_teacher"])
    plan = Plan(
        opts, ["supervised", "dual_teacher", "unimatch", "fixmatch"], Adaptation([], []), {}, threads=1, iterations=10
    )
    summary = summarize(results, plan)
    dual = summary["methods"]["dual_teacher"]["1/8"]
    assert dual["mean"] == pytest.approx(0.6) and dual["std"] == pytest.approx(0.1414, abs=1e-4)
    assert dual["seeds"] == {"0": 0.5, "1": 0.7}
    assert dual["time_to_accuracy"] == 12  # seed 0 reaches its supervised 0.4 at 8 s, seed 1 its 0.6 at 16 s
    assert dual["per_seed"]["0"]["time_to_accuracy"] == 8 and dual["per_seed"]["1"]["time_to_accuracy"] == 16
    assert summary["methods"]["supervised"]["1/8"]["time_to_accuracy"] == 10
    assert summary["methods"]["unimatch"]["1/8"]["time_to_accuracy"] == 10  # against seed 0's 0.4, not the mean 0.5
    assert summary["upper_bound"]["mean"] == 0.9 and summary["upper_bound"]["std"] is None
    table = write_table(summary, ["1/8"], tmp_path / "table.md")
    assert "| dual_teacher | 1/8 | 0.6000 ± 0.1414 | 2 | 10 | 1.600 | 16 | 100 | 12 |" in table
    assert summary["methods"]["fixmatch"]["1/8"]["per_seed"]["2"]["target"] is None
    assert "| fixmatch | 1/8 | 0.5500 ± 0.4950 | 2 | 10 | 1.000 | 10 | 100 | no supervised run |" in table


@pytest.mark.slow
def test_summary_schema_and_a_second_call_trains_nothing(data: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    first = compare(options(data, out, budgets=["iterations", "time"], upper_bound=True, jobs=2))
    assert first.failed == []
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"upper_bound", "methods", "budget", "recipe"}
    assert set(summary["upper_bound"]) == {"mean", "std", "seeds", "per_seed"}
    assert set(summary["methods"]) == {"supervised", "dual_teacher"}
    for cells in summary["methods"].values():
        cell = cells["1/8"]
        assert set(cell) == CELL_KEYS | {"equal_time"} and set(cell["equal_time"]) == CELL_KEYS
        assert isinstance(cell["mean"], float) and cell["std"] is None and set(cell["seeds"]) == {"0"}
        assert cell["s_per_iteration"] > 0 and cell["train_seconds"] > 0
        assert cell["time_to_accuracy"] is None or cell["time_to_accuracy"] > 0
    assert summary["methods"]["supervised"]["1/8"]["time_to_accuracy"] is not None
    assert summary["methods"]["dual_teacher"]["1/8"]["equal_time"]["per_seed"]["0"]["iterations"] == 4
    assert summary["budget"]["budgets"] == ["iterations", "time"] and summary["budget"]["iterations"] == 4
    assert "data.crop_size=48" in summary["recipe"]["adapted"]  # the 48 px scenes are smaller than the recipe's crop
    assert (out / "table.md").read_text().count("| supervised | 1/8 |") == 2
    assert (out / "miou_vs_time.png").stat().st_size > 0
    assert len(list((out / "summaries").glob("*.json"))) == 4  # 2 methods, the upper bound, supervised at equal time
    threads = sorted({json.loads(f.read_text())["threads"] for f in (out / "summaries").glob("*.json")})
    assert summary["budget"]["threads_per_run"] == threads  # what the runs used, not this call's share
    assert f"{' or '.join(map(str, threads))} thread(s) per run" in (out / "table.md").read_text()

    monkeypatch.setattr(cmp, "launch", no_training)
    again = compare(options(data, out, budgets=["iterations", "time"], upper_bound=True, jobs=2))
    assert again.summary == summary == json.loads((out / "summary.json").read_text())
    with pytest.raises(ConfigError, match=r"1-8_seed0_supervised_iterations4\.json was trained with other settings"):
        compare(options(data, out, overrides=[*TINY, "optim.lr=0.003"]))

    moved = Path(shutil.copytree(data, tmp_path / "moved"))  # the same data elsewhere: still reused
    assert compare(options(moved, out, budgets=["iterations", "time"], upper_bound=True, jobs=2)).summary == summary
    image = sorted((moved / "images").glob("*.png"))[-1]
    Image.open(image).save(image, compress_level=0)  # same pixels, another file: no longer provably the same data
    with pytest.raises(ConfigError, match=r"iterations4\.json was trained on other data"):
        compare(options(moved, out))


def test_an_interrupted_run_writes_no_summary(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(running, "train", lambda cfg, progress: {"interrupted": "SIGTERM"})
    run = Run(
        "r",
        "supervised",
        "1/8",
        0,
        "iterations",
        4,
        str(tmp_path),
        "train",
        "train",
        (),
        tuple(TINY),
        str(tmp_path / "run"),
        str(tmp_path / "r.json"),
        torch.get_num_threads(),
    )
    assert running.run_one(run) is None
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_minutes_picks_a_positive_iteration_count_and_keeps_it(data: Path, tmp_path: Path, monkeypatch) -> None:
    assert probe.iterations_for(2, 0.5) == 240 and probe.iterations_for(0.001, 10.0) == 1
    opts = options(data, tmp_path / "out", iterations=None, minutes=0.05, warmup=2)  # the probe starts from scratch
    plan = planning.plan_comparison(opts)
    assert plan.probe is not None
    assert plan.iterations >= 1 and plan.probe["s_per_iteration"] > 0
    assert plan.iterations == probe.iterations_for(0.05, plan.probe["s_per_iteration"])
    assert not (plan.runs_dir / "probe_dual_teacher").exists()
    monkeypatch.setattr(planning, "ProcessPoolExecutor", no_training)
    monkeypatch.setattr(running, "ProcessPoolExecutor", no_training)
    assert planning.plan_comparison(opts).iterations == plan.iterations  # the stored probe, not a new one


def test_the_help_states_the_recipes_length_and_warm_up() -> None:
    from dualteacher.cli import build_parser, sub_commands

    helps = {a.dest: a.help for a in sub_commands(build_parser())["compare"]._actions}
    assert f"the recipe's {WARMUP_ITERATIONS};" in (helps["warmup"] or "")
    assert f"the recipe's {ITERATIONS} less the warm-up" in (helps["iterations"] or "")


def test_the_default_length_is_the_recipes_after_its_warm_up(data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(planning, "ProcessPoolExecutor", no_training)
    monkeypatch.setattr(running, "ProcessPoolExecutor", no_training)
    assert CompareOptions(data=data, out=tmp_path, fractions=["1/8"]).warmup == WARMUP_ITERATIONS
    for warmup in (0, WARMUP_ITERATIONS):
        plan = planning.plan_comparison(options(data, tmp_path / "out", iterations=None, warmup=warmup))
        assert plan.iterations + warmup == ITERATIONS and plan.probe is None
    with pytest.raises(ConfigError, match=f"--warmup {ITERATIONS} leaves none of the recipe's"):
        planning.plan_comparison(options(data, tmp_path / "out", iterations=None, warmup=ITERATIONS))
    assert planning.plan_comparison(options(data, tmp_path / "out", warmup=ITERATIONS)).iterations == 4


@pytest.mark.parametrize(
    "change, message",
    [
        ({"methods": ["supervised", "mean_teacher_v2"]}, "--methods: unknown 'mean_teacher_v2'"),
        ({"methods": ["supervised", "train.epochs=3"]}, "overrides go after a one-value option"),
        ({"overrides": ["train.epohcs=3"]}, "unknown setting train.epohcs"),
        ({"overrides": ["train.seed=3"]}, "compare sets it for every run; use --seeds"),
        ({"fractions": ["1/0"]}, "--labeled: cannot read label budget"),
        ({"budgets": ["time"], "methods": ["supervised"]}, "add it to --methods"),
        ({"fractions": ["100"]}, "asks for 100 ids but only 64 are available"),
    ],
)
def test_bad_input_fails_before_any_run_starts(data: Path, tmp_path: Path, monkeypatch, change, message) -> None:
    monkeypatch.setattr(cmp, "launch", no_training)
    monkeypatch.setattr(planning, "ProcessPoolExecutor", no_training)
    monkeypatch.setattr(running, "ProcessPoolExecutor", no_training)
    with pytest.raises((ConfigError, DataError), match=message):
        compare(options(data, tmp_path / "out", **change))


def test_the_command_reports_bad_input_as_an_error(data: Path, tmp_path: Path, capsys) -> None:
    args = ["compare", "--data", str(data), "--labeled", "1/8", "--out", str(tmp_path / "out"), "--methods", "nope"]
    assert main(args) == 2
    assert "unknown 'nope'" in capsys.readouterr().err


def test_the_data_check_reads_masks_with_the_configured_ignore_index(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "d", disc=7)  # the disc's pixels hold 7: "unlabelled" in this dataset
    ids = [f"train{i:03d}" for i in range(12)]
    (root / "splits" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
    opts = options(root, tmp_path / "out", fractions=["4"], methods=["supervised"], iterations=2)
    with pytest.raises(DataError, match="values"):
        planning.plan_comparison(opts)
    opts = options(
        root,
        tmp_path / "out",
        fractions=["4"],
        methods=["supervised"],
        iterations=2,
        overrides=[*TINY, "data.ignore_index=7"],
    )
    assert planning.plan_comparison(opts).iterations == 2


def test_the_speed_probe_leaves_out_the_loader_start_up(tmp_path: Path, monkeypatch) -> None:
    class Fake:  # each fit() call costs 5 s of loader start-up plus 0.5 s per iteration
        def __init__(self, cfg, resume: bool, progress: bool) -> None:
            self.state = types.SimpleNamespace(iteration=0, train_seconds=0.0)

        def fit(self, stop_at: int) -> None:
            self.state.train_seconds += 5.0 + 0.5 * (stop_at - self.state.iteration)
            self.state.iteration = stop_at

    monkeypatch.setattr(probe, "Trainer", Fake)
    run = Run(
        "p",
        "supervised",
        "1/8",
        0,
        "probe",
        1000,
        str(tmp_path),
        "train",
        "train",
        (),
        tuple(TINY),
        str(tmp_path / "run"),
        str(tmp_path / "p.json"),
        1,
    )
    monkeypatch.setattr(Run, "config", lambda self: None)
    assert running.probe_worker(run) == pytest.approx(0.5)


@pytest.mark.slow
def test_a_warm_start_trains_the_warm_up_first_and_counts_it(data: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    result = compare(
        options(
            data,
            out,
            methods=["supervised", "mean_teacher"],
            warmup=2,
            upper_bound=True,
            budgets=["iterations", "time"],
            reference="mean_teacher",
        )
    )
    assert result.failed == []
    summaries = {p.stem: json.loads(p.read_text()) for p in (out / "summaries").glob("*.json")}
    warmup = summaries.pop("1-8_seed0_supervised_warmup2")
    assert warmup["iterations"] == 2 and "warmup" not in warmup
    upper = summaries.pop("all_seed0_supervised_all_iterations6")  # warm-up + run, from the pretrained encoder
    assert "warmup" not in upper
    timed = next(name for name in summaries if name.startswith("1-8_seed0_supervised_time"))
    assert set(summaries) == {
        "1-8_seed0_supervised_iterations4_after_warmup2",
        "1-8_seed0_mean_teacher_iterations4_after_warmup2",
        timed,
    }
    assert timed.endswith("_after_warmup2")
    for name, run in summaries.items():
        steps = int(name.split("_after")[0].rsplit("iterations", 1)[-1].rsplit("time", 1)[-1])
        config = (tmp_path / "out" / "runs" / name / "config.yaml").read_text()
        assert f"init_from: {out / 'runs' / '1-8_seed0_supervised_warmup2'}" in config
        assert run["warmup"] == {"name": warmup["name"], "iterations": 2, "train_seconds": warmup["train_seconds"]}
        assert run["iterations"] == 2 + steps
        assert run["curve"][: len(warmup["curve"])] == warmup["curve"]
        own = run["curve"][len(warmup["curve"]) :]
        assert own[0][0] > warmup["train_seconds"] and run["train_seconds"] == pytest.approx(own[-1][0])
        assert run["s_per_it"] == pytest.approx((run["train_seconds"] - warmup["train_seconds"]) / steps)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["warmup"] == 2 and set(summary["methods"]) == {"supervised", "mean_teacher"}
    assert "after a supervised warm-up of 2 iterations" in (out / "table.md").read_text()

    monkeypatch.setattr(cmp, "launch", no_training)
    again = {
        "methods": ["supervised", "mean_teacher"],
        "warmup": 2,
        "upper_bound": True,
        "budgets": ["iterations", "time"],
        "reference": "mean_teacher",
    }
    assert compare(options(data, out, **again)).summary == summary
    with pytest.raises(ConfigError, match="--warmup"):
        compare(options(data, out, warmup=-1))
    with pytest.raises(ConfigError, match="use --warmup"):
        compare(options(data, out, overrides=[*TINY, "method.init_from=x"]))

    warmup_summary = out / "summaries" / "1-8_seed0_supervised_warmup2.json"
    retrained = {**warmup, "train_seconds": warmup["train_seconds"] + 1}
    warmup_summary.write_text(json.dumps(retrained))  # the warm-up was trained again since
    with pytest.raises(ConfigError, match="started from another warm-up"):
        compare(options(data, out, **again))
    warmup_summary.write_text(json.dumps(warmup))
    (out / "summaries" / "1-8_seed0_mean_teacher_iterations4_after_warmup2.json").unlink()
    (out / "runs" / "1-8_seed0_supervised_warmup2" / "last.safetensors").unlink()
    with pytest.raises(ConfigError, match=r"warm-up .*last\.safetensors, which is gone"):
        compare(options(data, out, **again))
    reported = compare(options(data, out, **again, report_only=True))  # reporting needs no checkpoint
    assert set(reported.summary["methods"]) == {"supervised", "mean_teacher"}
    assert "1/8" not in reported.summary["methods"]["mean_teacher"]


def test_runs_whose_warm_up_did_not_finish_do_not_train(data: Path, tmp_path: Path, monkeypatch) -> None:
    launched = []

    def launch(runs, jobs, done):
        launched.append([run.name for run in runs])
        return [run.name for run in runs if run.budget == "warmup"]  # the warm-up fails

    monkeypatch.setattr(cmp, "launch", launch)
    result = compare(
        options(data, tmp_path / "out", methods=["supervised", "mean_teacher"], warmup=2, upper_bound=True)
    )
    assert launched == [["1-8_seed0_supervised_warmup2"], ["all_seed0_supervised_all_iterations6"]]
    assert set(result.failed) == {
        "1-8_seed0_supervised_warmup2",
        "1-8_seed0_supervised_iterations4_after_warmup2",
        "1-8_seed0_mean_teacher_iterations4_after_warmup2",
    }


def partly_labelled(data: Path, keep: int) -> list[str]:
    """Remove the masks of all train images but the first ``keep``; return the ids that keep one."""
    ids = (data / "splits" / "train.txt").read_text().split()
    for sample_id in ids[keep:]:
        (data / "masks" / f"{sample_id}.png").unlink()
    return ids[:keep]


@pytest.mark.slow
def test_masked_compares_on_the_images_that_have_a_mask(data: Path, tmp_path: Path) -> None:
    train_ids = (data / "splits" / "train.txt").read_text().split()
    masked = partly_labelled(data, 16)
    with pytest.raises(DataError, match="mask"):  # a budget needs every train image labelled
        planning.plan_comparison(options(data, tmp_path / "out", fractions=["1/8"]))
    out = tmp_path / "out"
    result = compare(
        options(
            data,
            out,
            fractions=["masked"],
            seeds=[0, 1],
            iterations=2,
            warmup=1,
            methods=["supervised", "mean_teacher"],
        )
    )
    assert result.failed == []
    assert (data / "splits" / "labeled_masked.txt").read_text().split() == masked
    assert (data / "splits" / "unlabeled_masked.txt").read_text().split() == train_ids[16:]
    assert set(result.summary["methods"]["mean_teacher"]) == {"masked"}
    assert set(result.summary["methods"]["supervised"]["masked"]["seeds"]) == {"0", "1"}
    names = {p.stem for p in (out / "summaries").glob("*.json")}
    runs = {f"masked_seed{s}_{m}_iterations2_after_warmup1" for s in (0, 1) for m in ("supervised", "mean_teacher")}
    assert names == runs | {f"masked_seed{s}_supervised_warmup1" for s in (0, 1)}
    for name in names:  # every seed trains on the same lists
        config = (out / "runs" / name / "config.yaml").read_text()
        assert "labeled_split: labeled_masked" in config and "unlabeled_split: unlabeled_masked" in config
    assert "| mean_teacher | masked |" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    "change, keep, error, message",
    [
        ({"upper_bound": True}, 16, ConfigError, "goes alone and without --upper-bound"),
        ({"fractions": ["masked", "1/8"]}, 16, ConfigError, "goes alone"),
        ({}, None, DataError, "every one of the 64 images .* has a mask"),
        ({}, 0, DataError, "no image of the .* has a mask file"),
    ],
)
def test_masked_refuses_what_it_cannot_compare(
    data: Path, tmp_path: Path, monkeypatch, change, keep, error, message
) -> None:
    monkeypatch.setattr(cmp, "launch", no_training)
    if keep is not None:
        partly_labelled(data, keep)
    with pytest.raises(error, match=message):
        compare(options(data, tmp_path / "out", **{"fractions": ["masked"], **change}))


def test_a_variant_can_change_a_methods_own_settings() -> None:
    assert cmp_options.variant_of("dual_teacher+shift=150") == ("dual_teacher", ("method.shift=150",))
    assert cmp_options.variant_of("mean_teacher+ema_momentum=0.999+threshold=0.9") == (
        "mean_teacher",
        ("method.ema_momentum=0.999", "method.threshold=0.9"),
    )
    options = CompareOptions(
        data=Path("."),
        out=Path("."),
        fractions=["1/8"],
        methods=["dual_teacher"],
        variants=["dual_teacher+shift=labeled_pass"],
    )
    assert cmp_options.check_options(options) == ["dual_teacher", "dual_teacher+shift=labeled_pass"]
    for bad, match in (
        ("dual_teacher+shift=0", "method.shift"),
        ("nothing+shift=5", "--variants: unknown 'nothing'"),
        ("mean_teacher+shift=5", "method.shift is not a setting of method 'mean_teacher'"),
    ):
        with pytest.raises(ConfigError, match=match):
            cmp_options.check_options(CompareOptions(data=Path("."), out=Path("."), fractions=["1/8"], variants=[bad]))


def test_a_method_setting_for_every_run_reaches_the_methods_that_have_it() -> None:
    options = CompareOptions(
        data=Path("."),
        out=Path("."),
        fractions=["1/8"],
        methods=["supervised", "mean_teacher"],
        overrides=["method.threshold=0.9"],
    )
    assert cmp_options.check_options(options) == ["supervised", "mean_teacher"]
    assert for_method("supervised", options.overrides) == []
    assert for_method("mean_teacher", options.overrides) == ["method.threshold=0.9"]
    with pytest.raises(ConfigError, match="override method.icl_weight: a setting of none of the methods compared"):
        cmp_options.check_options(
            CompareOptions(
                data=Path("."),
                out=Path("."),
                fractions=["1/8"],
                methods=["supervised", "mean_teacher"],
                overrides=["method.icl_weight=0.1"],
            )
        )
