"""The command line: help is cheap, split writes nested lists, errors are clear."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dualteacher.cli import build_parser, main, parse_args, sub_commands
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
    args = parse_args(["predict", "--device", "cpu", "run/best.safetensors", "a.png", "--overlay", "b.png", "--out", "o"])
    assert args.inputs == ["a.png", "b.png"] and args.overlay and args.out == Path("o")
    args = parse_args(["eval", "--json", "run/best.safetensors", "--split", "test"])
    assert args.checkpoint == Path("run/best.safetensors") and args.json and args.split == "test"
    args = parse_args(["report", "--out", "r.png", "runs/x"])
    assert args.run_dir == Path("runs/x") and args.out == Path("r.png")
    for verb in sub_commands(build_parser()):  # each verb is parsed the same way (a new one must be listed here)
        assert parse_args([verb, *MINIMAL[verb]]).command == verb


def test_overrides_after_a_list_option_stay_overrides() -> None:
    args = parse_args(["compare", "--data", "d", "--labeled", "1/16", "1/8", "train.amp=off", "--out", "o",
                       "--seeds", "0", "data.workers=0"])
    assert args.labeled == ["1/16", "1/8"] and args.seeds == [0]
    assert args.overrides == ["train.amp=off", "data.workers=0"]
    args = parse_args(["train", "train.epochs=1", "configs/x.yaml", "--quiet"])
    assert args.config == "configs/x.yaml" and args.overrides == ["train.epochs=1"]


MINIMAL = {  # the fewest words each verb accepts
    "train": [], "check-data": [], "eval": ["c.safetensors"], "predict": ["c.safetensors", "a.png", "--out", "o"],
    "export": ["c.safetensors", "--onnx", "m.onnx"], "report": ["runs/x"], "split": ["--data", "d", "--labeled", "4"],
    "make-digits": ["--out", "d"], "demo": [], "init": ["--data", "d"], "compare": ["--data", "d", "--labeled", "1/8", "--out", "o"],
    "push": ["runs/x", "--repo-id", "org/name"],
}


@pytest.mark.parametrize("argv, unknown", [
    (["train", "configs/x.yaml", "--quite", "train.epochs=1"], "--quite"),
    (["check-data", "x.yaml", "--fast", "data.workers=0"], "--fast"),
    (["predict", "c.safetensors", "a.png", "--overlya", "--out", "o"], "--overlya"),
])
def test_an_unknown_option_is_still_a_clear_error(argv: list[str], unknown: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2
    assert f"dualteacher {argv[0]}: error: unrecognized arguments: {unknown}" in capsys.readouterr().err


def test_an_unknown_verb_is_a_clear_error(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(["trian", "configs/x.yaml"])
    assert "invalid choice: 'trian'" in capsys.readouterr().err


def test_check_data_with_options_between_overrides_runs(tiny_data, tmp_path: Path, capsys) -> None:
    from conftest import tiny_overrides

    overrides = tiny_overrides(tiny_data, tmp_path / "run")
    assert main(["check-data", *overrides[:2], "--quiet", *overrides[2:4], "--json", *overrides[4:]]) == 0
    assert json.loads(capsys.readouterr().out)["ok"]
