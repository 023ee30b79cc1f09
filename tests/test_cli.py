"""The command line: help is cheap and ends with examples that parse, split writes nested lists,
errors are clear, suggest the nearest word and come before PyTorch is imported."""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dualteacher.cli import EXAMPLES, build_parser, main, parse_args, sub_commands
from dualteacher.config import load_config
from dualteacher.data.registry import open_source


def test_help_does_not_import_torch() -> None:
    code = "import sys; from dualteacher.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_split_command_writes_nested_lists(tiny_data, tmp_path: Path) -> None:
    root = Path(tiny_data["root"])
    assert main(["split", "--data", str(root), "--labeled", "1/16", "--seed", "3"]) == 0
    assert main(["split", "--data", str(root), "--labeled", "1/4", "--seed", "3"]) == 0
    source = open_source("folder", root)
    small = set(source.split_ids("labeled_1-16_seed3"))
    large = set(source.split_ids("labeled_1-4_seed3"))
    assert len(small) == 4 and len(large) == 16 and small < large
    assert small.isdisjoint(source.split_ids("unlabeled_1-16_seed3"))


def test_bad_input_is_a_clear_error(tiny_data, tmp_path: Path, capsys) -> None:
    assert main(["train", "train.epohcs=3"]) == 2
    assert "train.epohcs" in capsys.readouterr().err
    assert main(["train", f"data.root={tmp_path}", "run_dir=" + str(tmp_path / "run")]) == 2
    assert "classes.txt" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors does not exist" in capsys.readouterr().err


def test_training_refuses_to_start_on_fatal_data_problems(tiny_data, tmp_path: Path, capsys) -> None:
    import shutil

    from conftest import tiny_overrides

    root = tmp_path / "data"
    shutil.copytree(tiny_data["root"], root)
    labeled = (root / "splits" / f"{tiny_data['labeled']}.txt").read_text().split()
    (root / "splits" / "broken.txt").write_text("\n".join([*labeled, labeled[0], "val_0000"]) + "\n")
    (root / "masks" / f"{labeled[1]}.png").unlink()
    overrides = tiny_overrides({**tiny_data, "root": str(root), "labeled": "broken"}, tmp_path / "run")
    assert main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert labeled[0] in err and "val_0000" in err and f"{labeled[1]}.png" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("verb", ["train", "check-data"])
@pytest.mark.parametrize("order", ["before", "between", "after"])
def test_options_go_anywhere_among_config_and_overrides(verb: str, order: str) -> None:
    words = {
        "before": ["--quiet", "--dataset", "voc", "configs/x.yaml", "train.epochs=1", "data.workers=0"],
        "between": ["configs/x.yaml", "--quiet", "train.epochs=1", "--dataset", "voc", "data.workers=0"],
        "after": ["configs/x.yaml", "train.epochs=1", "data.workers=0", "--quiet", "--dataset", "voc"],
    }[order]
    args = parse_args([verb, *words])
    assert args.command == verb and args.func.__name__ == f"_cmd_{verb.replace('-', '_')}"
    assert args.config == "configs/x.yaml" and args.overrides == ["train.epochs=1", "data.workers=0"]
    assert args.quiet and args.dataset == "voc"


def test_every_verb_takes_options_between_its_positional_arguments() -> None:
    args = parse_args(
        ["predict", "--device", "cpu", "run/best.safetensors", "a.png", "--overlay", "b.png", "--out", "o"]
    )
    assert args.inputs == ["a.png", "b.png"] and args.overlay and args.out == Path("o")
    args = parse_args(["eval", "--json", "run/best.safetensors", "--split", "test"])
    assert args.checkpoint == Path("run/best.safetensors") and args.json and args.split == "test"
    args = parse_args(["report", "--out", "r.png", "runs/x"])
    assert args.run_dir == Path("runs/x") and args.out == Path("r.png")
    for verb in sub_commands(build_parser()):  # each verb is parsed the same way (a new one must be listed here)
        assert parse_args([verb, *MINIMAL[verb]]).command == verb


def test_overrides_after_a_list_option_stay_overrides() -> None:
    args = parse_args(
        [
            "compare",
            "--data",
            "d",
            "--labeled",
            "1/16",
            "1/8",
            "train.amp=off",
            "--out",
            "o",
            "--seeds",
            "0",
            "data.workers=0",
        ]
    )
    assert args.labeled == ["1/16", "1/8"] and args.seeds == [0]
    assert args.overrides == ["train.amp=off", "data.workers=0"]
    args = parse_args(["train", "train.epochs=1", "configs/x.yaml", "--quiet"])
    assert args.config == "configs/x.yaml" and args.overrides == ["train.epochs=1"]


MINIMAL = {  # the fewest words each verb accepts
    "train": [],
    "check-data": [],
    "eval": ["c.safetensors"],
    "predict": ["c.safetensors", "a.png", "--out", "o"],
    "export": ["c.safetensors", "--onnx", "m.onnx"],
    "report": ["runs/x"],
    "split": ["--data", "d", "--labeled", "4"],
    "make-digits": ["--out", "d"],
    "demo": [],
    "init": ["--data", "d"],
    "compare": ["--data", "d", "--labeled", "1/8", "--out", "o"],
    "push": ["runs/x", "--repo-id", "org/name"],
}


@pytest.mark.parametrize(
    "argv, unknown, hint",
    [
        (["train", "configs/x.yaml", "--quite", "train.epochs=1"], "--quite", " (did you mean --quiet?)"),
        (["check-data", "x.yaml", "--fast", "data.workers=0"], "--fast", "\n"),
        (["predict", "c.safetensors", "a.png", "--overlya", "--out", "o"], "--overlya", " (did you mean --overlay?)"),
    ],
)
def test_an_unknown_option_is_still_a_clear_error(argv: list[str], unknown: str, hint: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert f"dualteacher {argv[0]}: error: unrecognized arguments: {unknown}{hint}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message, nearest",
    [
        (["trian", "configs/x.yaml"], "invalid choice: 'trian'", "train"),
        (["train", "--method", "dual_teachr"], "argument --method: invalid choice: 'dual_teachr'", "dual_teacher"),
        (["eval", "c.safetensors", "--mode", "slid"], "argument --mode: invalid choice: 'slid'", "slide"),
    ],
)
def test_a_mistyped_verb_or_choice_suggests_the_nearest(argv: list[str], message: str, nearest: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and f"; did you mean {nearest}?" in err


def test_every_verbs_help_ends_with_examples_that_parse() -> None:
    commands = sub_commands(build_parser())
    assert set(EXAMPLES) == set(commands)
    for name, command in commands.items():
        help_text = command.format_help()
        assert "\nexamples:\n" in help_text, name
        examples = [
            line.strip()
            for line in help_text.split("\nexamples:\n")[1].splitlines()
            if line.strip().startswith("dualteacher ")
        ]
        assert 2 <= len(examples) <= 3, name
        for example in examples:
            words = shlex.split(example)[1:]
            assert words[0] == name, example
            assert parse_args(words).command == name, example


def _option_entries(help_text: str) -> dict[str, str]:
    """Each option of a help text's options section with its help, whitespace collapsed."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.split("\noptions:\n")[1].split("\n\n")[0].splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            entries[current] = line
        elif current is not None:
            entries[current] += " " + line.strip()
    return {option: " ".join(text.split()) for option, text in entries.items()}


def test_every_option_with_a_default_shows_it() -> None:
    for name, command in sub_commands(build_parser()).items():
        entries = _option_entries(command.format_help())
        for action in command._actions:
            default = action.default
            if not action.option_strings or default is None or default is False or default == argparse.SUPPRESS:
                continue
            text = entries[action.option_strings[0]]
            shown = (" ".join(map(str, default)) or "none") if isinstance(default, list) else str(default)
            assert f"(default: {shown}" in text, f"{name} {action.option_strings[0]}: {text}"


def test_every_device_option_defaults_to_auto_and_says_what_it_means() -> None:
    commands = sub_commands(build_parser())
    devices = {
        name: next(a for a in command._actions if "--device" in a.option_strings)
        for name, command in commands.items()
        if any("--device" in a.option_strings for a in command._actions)
    }
    assert set(devices) == {"train", "eval", "predict"}
    assert devices["eval"].default == devices["predict"].default == "auto"
    assert devices["train"].default is None  # the config's train.device, whose default is auto too
    assert load_config(None).train.device == "auto"
    for action in devices.values():
        assert action.help is not None and "auto: CUDA when available" in action.help


def test_print_config_prints_the_resolved_settings_and_trains_nothing(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    argv = ["digits_dual_teacher", "method.icl_weight=0.5", f"run_dir={run_dir}", "--device", "cpu"]
    assert main(["train", *argv, "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_config("digits_dual_teacher", ["method.icl_weight=0.5", f"run_dir={run_dir}", "train.device=cpu"])
    assert printed == expected.to_dict() and printed["method"]["icl_weight"] == 0.5
    assert not run_dir.exists()


def test_print_config_of_the_fitted_recipe_lists_its_choices_then_both_runs(tiny_data, tmp_path: Path, capsys) -> None:
    splits = [f"data.labeled_split={tiny_data['labeled']}", f"data.unlabeled_split={tiny_data['unlabeled']}"]
    fitted = ["train", "--data", tiny_data["root"], "--method", "dual_teacher", *splits, f"run_dir={tmp_path / 'run'}"]
    assert main([*fitted, "--iterations", "20", "--print-config"]) == 0
    out = capsys.readouterr().out
    warmup, run = yaml.safe_load_all(out)
    assert "# 20 iterations in all (--iterations)" in out
    assert warmup["method"]["name"] == "supervised" and run["method"]["name"] == "dual_teacher"
    assert run["method"]["init_from"] == warmup["run_dir"] == str(tmp_path / "run" / "warmup")
    assert warmup["train"]["iters_per_epoch"] * warmup["train"]["epochs"] == 6  # the recipe's 3/10
    assert not (tmp_path / "run").exists()
    assert main([*fitted, "--minutes", "1", "--print-config"]) == 2
    assert "--print-config trains nothing" in capsys.readouterr().err


@pytest.mark.slow
def test_setting_errors_come_before_pytorch_is_imported(tmp_path: Path) -> None:
    """Spawns Python: a mistyped setting of any section but ``method``, a wrong method name and a
    wrong key in a YAML file are reported without importing torch."""
    config = tmp_path / "exp.yaml"
    config.write_text("train:\n  epochs: 3\n  batch_sise: 4\n")
    cases = {
        "train.epohcs": (["train", "train.epohcs=3"], "did you mean train.epochs?"),
        "method.name": (["train", "method.name=dual_teachr"], "did you mean dual_teacher?"),
        "yaml": (
            ["train", str(config)],
            f"{config}:3: unknown setting train.batch_sise; did you mean train.batch_size?",
        ),
        "check-data": (["check-data", "data.crop_sise=3"], "did you mean data.crop_size?"),
    }
    for name, (argv, message) in cases.items():
        code = (
            "import sys; from dualteacher.cli import main; code = main(sys.argv[1:]); "
            "print(code, 'torch' in sys.modules)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=tmp_path, check=False
        )
        assert done.stdout.split() == ["2", "False"], (name, done.stdout, done.stderr)
        assert message in done.stderr, (name, done.stderr)


def test_check_data_with_options_between_overrides_runs(tiny_data, tmp_path: Path, capsys) -> None:
    from conftest import tiny_overrides

    overrides = tiny_overrides(tiny_data, tmp_path / "run")
    assert main(["check-data", *overrides[:2], "--quiet", *overrides[2:4], "--json", *overrides[4:]]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
