"""The Python API (``from dualteacher import train, compare, load_model, load_config``): cheap to
import, typed for type checkers, the README's block calls it as it is, its two forms of ``train``,
``compare`` with keywords, and the library's messages routed through ``logging``."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest

import dualteacher
from dualteacher import CompareOptions, TrainResult, compare, load_config, train
from dualteacher.cli import main
from dualteacher.config import ConfigError, with_overrides
from dualteacher.data.prepare import prepare_folder
from dualteacher.methods.common import PseudoLabelSettings

from scenes import own_folder

ROOT = Path(__file__).resolve().parent.parent
FAST = [
    "model.encoder=resnet18",
    "model.weights=null",
    "model.decoder_channels=16",
    "data.workers=0",
    "train.batch_size=2",
    "train.unlabeled_batch_size=2",
    "train.log_every=1",
    "train.probe_images=1",
]


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    root = own_folder(tmp_path / "leaves", count=10, masked=6)
    prepare_folder(root)
    return root


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_the_api_is_named_at_the_top_without_importing_torch() -> None:
    assert run_python("import sys, dualteacher; print('torch' in sys.modules)").stdout == "False\n"
    assert [name for name in dualteacher.__all__ if getattr(dualteacher, name) is None] == []
    from dualteacher.api import compare as api_compare
    from dualteacher.api import train as api_train
    from dualteacher.inference.model import load_model

    assert (dualteacher.train, dualteacher.compare, dualteacher.load_model) == (api_train, api_compare, load_model)
    assert set(dualteacher.__all__) == {*dualteacher._LAZY, "__version__"} and set(dualteacher.__all__) <= set(
        dir(dualteacher)
    )
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        dualteacher.trian  # noqa: B018


@pytest.mark.slow
def test_a_type_checker_sees_the_real_signatures(tmp_path: Path) -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy)")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import dualteacher\n"
        "reveal_type(dualteacher.train)\n"
        "reveal_type(dualteacher.load_model)\n"
        "reveal_type(dualteacher.train(data='d', method='mean_teacher').best)\n"
        "dualteacher.train(data='d', mehtod='mean_teacher')\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", "--no-incremental", str(snippet)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(ROOT / "src")},
    )
    out = checked.stdout
    assert "def (*, data: str | pathlib.Path, method: str, iterations: int | None =" in out, out
    assert "-> dualteacher.api.TrainResult" in out and "Any" not in out.split("snippet.py:3")[0], out
    assert 'Revealed type is "def (path: str | pathlib.Path, role: str | None =' in out, out
    assert 'snippet.py:4: note: Revealed type is "pathlib.Path"' in out, out
    assert 'snippet.py:5: error: No overload variant of "train"' in out, out


def readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"## Python API\n\n```python\n(.*?)\n```", text, re.S)
    assert match, "README.md: no ```python block under ## Python API"
    return match.group(1)


def test_the_readme_block_calls_the_api_as_it_is() -> None:
    tree = ast.parse(readme_block())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names]
    assert imported and set(imported) <= set(dualteacher.__all__)
    calls = [
        (node.func.id, node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported
    ]
    assert {name for name, _ in calls} == {"train", "load_config", "load_model", "compare"}
    for name, call in calls:
        function = getattr(dualteacher, name)
        forms = typing.get_overloads(function) if hasattr(typing, "get_overloads") else []
        args, keywords = [object()] * len(call.args), {k.arg: object() for k in call.keywords if k.arg is not None}
        fits = []
        for form in forms or [function]:
            try:
                inspect.signature(form).bind(*args, **keywords)
                fits.append(form)
            except TypeError:
                pass
        assert fits, f"README: {ast.unparse(call)} fits no signature of dualteacher.{name}"


def test_train_refuses_a_mix_of_its_two_forms(prepared: Path) -> None:
    any_train: Any = train  # the calls below break the signatures on purpose: the checks at run time refuse them
    any_compare: Any = compare
    with pytest.raises(TypeError, match="needs a config"):
        any_train()
    with pytest.raises(TypeError, match="not both"):
        any_train("digits_supervised", data=prepared)
    with pytest.raises(TypeError, match="needs method=NAME, one of supervised"):
        any_train(data=prepared)
    with pytest.raises(TypeError, match="iterations= goes with data=ROOT"):
        any_train("digits_supervised", iterations=5)
    with pytest.raises(TypeError, match=r"a list of strings, e.g. \['train.epochs=4'\]"):
        any_train("digits_supervised", "train.epochs=4")
    with pytest.raises(ConfigError, match="is not one of"):
        train(data=prepared, method="dual_teachr")
    with pytest.raises(TypeError, match="needs labeled="):
        any_compare(data=prepared, out=prepared / "out")
    with pytest.raises(TypeError, match="not both"):
        any_compare(CompareOptions(prepared, prepared / "out", ["masked"]), seeds=[0])


def test_overrides_on_a_config_make_a_validated_copy() -> None:
    cfg = load_config("digits_mean_teacher")
    changed = with_overrides(cfg, ["train.epochs=3", "method.threshold=0.5"])
    assert isinstance(changed.method, PseudoLabelSettings)
    assert (changed.train.epochs, changed.method.threshold) == (3, 0.5) and cfg.train.epochs != 3
    with pytest.raises(ConfigError, match="train.epohcs"):
        with_overrides(cfg, ["train.epohcs=3"])


def test_messages_go_through_logging_and_the_level_silences_them(prepared: Path, tmp_path: Path, caplog) -> None:
    options: dict[str, Any] = {
        "data": prepared,
        "labeled": "masked",
        "methods": ["supervised"],
        "seeds": [0],
        "iterations": 2,
        "warmup": 0,
        "report_only": True,
    }  # trains nothing: plans, reports the recipe and the (empty) table
    compare(out=tmp_path / "a", **options)
    [record] = [r for r in caplog.records if r.getMessage().startswith("recipe: ")]
    assert record.name == "dualteacher.experiments.compare" and record.levelno == logging.INFO
    assert "data.crop_size=48" in record.getMessage()
    logger = logging.getLogger("dualteacher")
    caplog.clear()
    before = logger.level
    logger.setLevel(logging.WARNING)
    try:
        compare(out=tmp_path / "b", **options)
    finally:
        logger.setLevel(before)
    assert caplog.records == []


def test_a_program_without_logging_set_up_gets_the_messages_on_stdout() -> None:
    code = (
        "import logging, sys, dualteacher\n"
        "log = logging.getLogger('dualteacher.training.loop')\n"
        "log.info('an evaluation'); log.debug('not shown')\n"
        "logging.getLogger('dualteacher').setLevel(logging.WARNING)\n"
        "log.info('silenced'); log.warning('a warning')\n"
        "logging.basicConfig(format='service: %(name)s %(message)s')\n"
        "log.warning('configured')\n"
    )
    result = run_python(code)
    assert result.stdout == "an evaluation\na warning\n"  # plain lines, as the command prints them
    assert result.stderr == "service: dualteacher.training.loop configured\n"  # once: the fallback stepped aside


def test_compare_takes_the_commands_options_as_keywords(prepared: Path, tmp_path: Path, capsys) -> None:
    options: dict[str, Any] = {
        "methods": ["supervised"],
        "seeds": [0],
        "iterations": 2,
        "warmup": 0,
        "report_only": True,
    }
    result = compare(data=prepared, labeled="masked", out=tmp_path / "api", **options)
    assert result.failed == [] and result.summary["budget"]["iterations"] == 2
    assert result.summary["budget"]["warmup"] == 0 and list(result.summary["methods"]) == ["supervised"]
    capsys.readouterr()
    handlers = list(logging.getLogger("dualteacher").handlers)
    argv = [
        "compare",
        "--data",
        str(prepared),
        "--labeled",
        "masked",
        "--out",
        str(tmp_path / "cli"),
        "--methods",
        "supervised",
        "--seeds",
        "0",
        "--iterations",
        "2",
        "--warmup",
        "0",
        "--report-only",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("recipe: data.crop_size=48") and "Trained on: " in out  # logged, shown on stdout
    assert logging.getLogger("dualteacher").handlers == handlers  # the command's console handler is gone after
    assert json.loads((tmp_path / "cli" / "summary.json").read_text()) == result.summary


@pytest.mark.slow
def test_train_with_data_then_with_its_config_and_use_the_model(prepared: Path, tmp_path: Path) -> None:
    run = train(
        data=prepared,
        method="supervised",
        iterations=2,
        overrides=[*FAST, f"run_dir={tmp_path / 'run'}"],
        progress=False,
    )
    assert isinstance(run, TrainResult) and run.interrupted is None and run.run_dir == tmp_path / "run"
    assert run.best.is_file() and run.miou is not None and 0 <= run.miou <= 1 and run.record["iteration"] == 2
    log = (run.run_dir / "metrics.jsonl").read_text()
    again = train(run.config, progress=False)  # finished: resumes at its end and trains nothing
    assert again.record == run.record and (run.run_dir / "metrics.jsonl").read_text().count(
        '"type": "train"'
    ) == log.count('"type": "train"')
    model = run.load_model()
    assert model.predict(prepared / "images" / "img07.jpg").shape == (48, 48)
    best = max(json.loads(line)["student/miou"] for line in log.splitlines() if '"type": "eval"' in line)
    assert model.eval_dataset().miou == pytest.approx(best, abs=1e-9)


@pytest.mark.slow
def test_the_example_trains_evaluates_and_predicts(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_own_data.py"), "--out", str(tmp_path), "--tiny"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recipe: data.labeled_split=labeled_masked" in done.stdout  # the library's messages, via logging
    assert re.search(r"run/best\.safetensors: val mIoU \d\.\d{3}", done.stdout), done.stdout[-2000:]
    [picture] = tmp_path.glob("scene_*_classes.png")
    assert f"wrote {picture}" in done.stdout and (tmp_path / "run" / "warmup" / "best.safetensors").is_file()
