"""Installing like a library: one version source, `dualteacher --version`, clear errors for missing
extras, and a wheel that carries its licence and data files, keeps the user's torch and brings
no demo or export package without its extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import dualteacher
from dualteacher.cli import VERSION_DISTRIBUTIONS, main, parse_args
from dualteacher.extras import MissingExtraError, locate, require

from packaging_utils import (
    CONSTRAINTS,
    REPO,
    build_wheel,
    copy_source,
    installed_venv,  # noqa: F401  (fixture)
    run,
    venv_bin,
    wheel,  # noqa: F401  (fixture)
)

EXTRA_ONLY = {"mlxtend", "scikit-image", "onnx", "onnxruntime", "pytest", "mkdocs"}
"""Distributions that only an extra may bring."""
DEMO_DEPENDENCIES = {"scipy", "pandas", "scikit-learn"}
"""What mlxtend and scikit-image pull in; the core install must not."""


def _metadata(wheel_path: Path) -> tuple[list[str], Message]:
    """The wheel's file names and its parsed METADATA."""
    with zipfile.ZipFile(wheel_path) as archive:
        names = archive.namelist()
        text = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    return names, Parser().parsestr(text)


def _install_list(python: Path | str, wheel_path: Path, tmp_path: Path) -> dict[str, str]:
    """Name → version of what ``pip install --dry-run`` of the wheel (constraints.txt applied)
    would install into ``python``'s environment."""
    report = tmp_path / "report.json"
    run([python, "-m", "pip", "install", "--dry-run", "--quiet", "--report", report, "-c", CONSTRAINTS, wheel_path])
    return {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}


def test_the_version_is_written_once() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "dualteacher.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", dualteacher.__version__)
    written = [p for p in (REPO / "src").rglob("*.py") if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert written == [REPO / "src" / "dualteacher" / "__init__.py"]


def test_version_prints_every_library_python_and_devices(capsys) -> None:
    import torch

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"dualteacher {dualteacher.__version__} (")
    assert [line.split()[0] for line in lines[1:5]] == list(VERSION_DISTRIBUTIONS)
    assert lines[1].startswith(f"torch {torch.__version__.split('+')[0]}")
    assert lines[5].startswith(f"Python {sys.version.split()[0]}")
    expected = "devices: cuda: " if torch.cuda.is_available() else "devices: "
    assert lines[6].startswith(expected) and len(lines) == 7
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert lines[6] == "devices: cpu only"


def test_help_and_version_parsing_do_not_import_torch() -> None:
    code = (
        "import sys\nfrom dualteacher.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--version" in result.stdout and result.stderr.split() == ["0", "False"]


def test_no_command_prints_the_help_and_exits_2(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args([])
    assert exit_.value.code == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: dualteacher") and "make-digits" in out and "dualteacher[demo]" in out


def test_a_missing_extra_names_the_extra_and_the_command() -> None:
    with pytest.raises(MissingExtraError, match=re.escape("pip install 'dualteacher[demo]'")) as error:
        require("dualteacher_no_such_module.sub", extra="demo", purpose="making the built-in digit scenes")
    assert str(error.value).startswith("making the built-in digit scenes needs the 'demo' extra")
    with pytest.raises(MissingExtraError, match=re.escape("dualteacher[export]")):
        locate("dualteacher_no_such_module", extra="export", purpose="checking an ONNX export")
    assert require("json", extra="demo", purpose="x") is json


def test_a_broken_optional_package_is_not_reported_as_missing(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dt_broken_optional.py").write_text("import dt_its_own_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError) as error:
        require("dt_broken_optional", extra="demo", purpose="x")
    assert not isinstance(error.value, MissingExtraError) and error.value.name == "dt_its_own_missing_dependency"


@pytest.mark.slow
def test_wheel_carries_licence_metadata_and_data_files(wheel: Path) -> None:  # noqa: F811
    names, meta = _metadata(wheel)
    assert meta["Version"] == dualteacher.__version__
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    licence = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(licence) == (REPO / "LICENSE").read_bytes()
    assert "dualteacher/py.typed" in names
    assert meta["Author"] == "dualteacher developers" and "Typing :: Typed" in (meta.get_all("Classifier") or [])
    packaged = {n for n in names if n.startswith("dualteacher/")}
    shipped = {
        f"dualteacher/{p.relative_to(REPO / 'src' / 'dualteacher').as_posix()}"
        for p in (REPO / "src" / "dualteacher").rglob("*")
        if p.is_file() and p.suffix in (".py", ".typed", ".yaml", ".json") and "__pycache__" not in p.parts
    }
    assert shipped <= packaged


@pytest.mark.slow
def test_wheel_ships_configs_and_json_inside_the_package(tmp_path: Path) -> None:
    source = copy_source(tmp_path / "source")
    package = source / "src" / "dualteacher"
    (package / "configs").mkdir(exist_ok=True)
    (package / "configs" / "probe_config.yaml").write_text("method:\n  name: dual_teacher\n")
    (package / "data" / "probe_table.json").write_text("{}\n")
    names, _ = _metadata(build_wheel(tmp_path / "build", source))
    assert {"dualteacher/configs/probe_config.yaml", "dualteacher/data/probe_table.json"} <= set(names)


@pytest.mark.slow
def test_core_requirements_are_ranges_and_extras_stay_extras(wheel: Path) -> None:  # noqa: F811
    _, meta = _metadata(wheel)
    requirements = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    core = {r.name.lower(): r for r in requirements if r.marker is None}
    assert EXTRA_ONLY.isdisjoint(core)
    for name, older in (("torch", "2.5.0"), ("torchvision", "0.20.0")):
        assert not any(s.operator in ("==", "===", "~=") for s in core[name].specifier)
        assert core[name].specifier.contains(older) and core[name].specifier.contains("99.0")
    extras = {r.name.lower(): str(r.marker) for r in requirements if r.marker is not None}
    assert 'extra == "demo"' in extras["mlxtend"] and 'extra == "demo"' in extras["scikit-image"]
    assert 'extra == "export"' in extras["onnxruntime"]


@pytest.mark.slow
def test_installing_the_wheel_keeps_the_installed_torch(wheel: Path, tmp_path: Path) -> None:  # noqa: F811
    listed = _install_list(sys.executable, wheel, tmp_path)
    assert "dualteacher" in listed
    assert not {"torch", "torchvision"} & set(listed), listed


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(installed_venv: Path, tmp_path: Path) -> None:  # noqa: F811
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = run([venv_bin(installed_venv, "dualteacher"), "--version"], cwd=empty, timeout=120)
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"dualteacher {dualteacher.__version__} (") and str(installed_venv) in first
    assert str(REPO) not in result.stdout.splitlines()[0]
    assert result.stdout.splitlines()[-1].startswith("devices: ")
    freeze = run([venv_bin(installed_venv, "python"), "-m", "pip", "freeze"], cwd=empty, timeout=120).stdout.lower()
    installed = {line.split("==")[0] for line in freeze.splitlines()}
    assert not (EXTRA_ONLY | DEMO_DEPENDENCIES) & installed


@pytest.mark.slow
def test_missing_extras_fail_clearly_in_a_core_install(installed_venv: Path, tmp_path: Path) -> None:  # noqa: F811
    dualteacher_cli = venv_bin(installed_venv, "dualteacher")
    digits = run([dualteacher_cli, "make-digits", "--out", tmp_path / "digits"], cwd=tmp_path, timeout=120, check=False)
    assert digits.returncode == 2
    assert "making the built-in digit scenes needs the 'demo' extra" in digits.stderr
    assert "pip install 'dualteacher[demo]'" in digits.stderr
    export = run(
        [dualteacher_cli, "export", tmp_path / "run" / "best.safetensors", "--onnx", tmp_path / "m.onnx"],
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert export.returncode == 2 and "pip install 'dualteacher[export]'" in export.stderr
    assert "--no-check" in export.stderr and not (tmp_path / "m.onnx").exists()
