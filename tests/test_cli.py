"""The command line: help is cheap, split writes nested lists, errors are clear."""

import subprocess
import sys
from pathlib import Path

from dualteacher.cli import main
from dualteacher.data.folder import read_split


def test_help_does_not_import_torch() -> None:
    code = "import sys; from dualteacher.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_split_command_writes_nested_lists(tiny_data, tmp_path: Path) -> None:
    root = Path(tiny_data["root"])
    assert main(["split", "--data", str(root), "--labeled", "1/16", "--seed", "3"]) == 0
    assert main(["split", "--data", str(root), "--labeled", "1/4", "--seed", "3"]) == 0
    small = set(read_split(root, "labeled_1-16_seed3"))
    large = set(read_split(root, "labeled_1-4_seed3"))
    assert len(small) == 4 and len(large) == 16 and small < large
    assert small.isdisjoint(read_split(root, "unlabeled_1-16_seed3"))


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
