"""One registry per extension point: every name resolves, and the configuration checks, the
command line, the recipe and the comparison read their names from the registries, so a method
registered from this file alone trains through ``train()``."""

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import Tensor

import dualteacher
from dualteacher.cli import build_parser, sub_commands
from dualteacher.config import ConfigError, MethodSettings, load_config
from dualteacher.data.check import needs_unlabeled
from dualteacher.data.source import DataSource
from dualteacher.experiments import budgets, recipe
from dualteacher.experiments.compare import options as compare
from dualteacher.inference.modes import EvalMode
from dualteacher.methods import Batch, Method
from dualteacher.registry import (
    DATASETS,
    ENTRY_POINT_GROUPS,
    EVAL_MODES,
    METHODS,
    MIXINGS,
    NETWORKS,
    THRESHOLD_MODES,
    TRACKERS,
    PluginError,
    Registry,
)
from dualteacher.semi.losses import supervised_ce
from dualteacher.semi.mixing import make_mix_mask, no_mixing
from dualteacher.training.loop import train
from dualteacher.training.trackers import CsvTracker, Tracker

from conftest import tiny_overrides
from method_contract import MethodContract


class LabelledOnly(Method):
    """A toy method that reads no unlabelled batch."""

    uses_unlabeled = False

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert labeled.mask is not None
        loss = supervised_ce(self.net(self.norm(labeled.image)), labeled.mask)
        return loss, {"loss_sup": loss.detach()}


class TestLabelledOnlyContract(MethodContract):
    method = LabelledOnly


@pytest.mark.parametrize(
    ("registry", "kind"),
    [
        (METHODS, Method),
        (DATASETS, DataSource),
        (EVAL_MODES, EvalMode),
    ],
)
def test_every_class_entry_resolves_and_names_itself(registry: Registry, kind: type) -> None:
    for name in registry:
        target = registry.get(name)
        assert isinstance(target, kind) or issubclass(target, kind), name
        assert registry.name_of(target) == name


@pytest.mark.parametrize("registry", [MIXINGS, THRESHOLD_MODES])
def test_every_function_entry_resolves(registry: Registry) -> None:
    assert all(callable(registry.get(name)) for name in registry)


def test_every_tracker_has_the_tracker_methods() -> None:
    methods = [name for name in vars(Tracker) if not name.startswith("_") and callable(getattr(Tracker, name))]
    assert methods == ["start", "log_params", "log_metrics", "log_image", "log_artifact", "finish"]
    for name in TRACKERS:
        tracker = TRACKERS.get(name)
        assert all(callable(getattr(tracker, method, None)) for method in methods), name
        assert isinstance(tracker.requires, tuple) and isinstance(tracker.install, str), name


def test_importing_the_registries_and_the_config_loads_no_torch() -> None:
    code = "import sys, dualteacher.registry, dualteacher.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_name_is_registered_once_and_only_inside_its_block() -> None:
    with pytest.raises(ValueError, match="already registered"):
        METHODS.register("supervised", LabelledOnly)
    with pytest.raises(RuntimeError), METHODS.registered("labelled_only", LabelledOnly):
        assert METHODS.get("labelled_only") is LabelledOnly
        raise RuntimeError
    assert "labelled_only" not in METHODS
    with pytest.raises(ValueError, match="unknown method 'labelled_only'; choose from supervised"):
        METHODS.get("labelled_only")


@pytest.mark.parametrize(
    ("registry", "key", "value", "target"),
    [
        (METHODS, "method.name", "toy", LabelledOnly),
        (DATASETS, "data.dataset", "toy", DataSource),
        (EVAL_MODES, "data.eval_mode", "toy", EvalMode()),
        (THRESHOLD_MODES, "method.threshold_mode", "toy", lambda confident, valid: valid),
        (MIXINGS, "method.mixings", "[toy]", no_mixing),
        (TRACKERS, "train.loggers", "[toy]", CsvTracker),
    ],
)
def test_config_validation_reads_the_registries(registry: Registry, key: str, value: str, target: object) -> None:
    method = [] if key == "method.name" else ["method.name=dual_teacher"]
    with pytest.raises(ConfigError, match=key):
        load_config(None, [*method, f"{key}={value}"])
    with registry.registered("toy", target):
        load_config(None, [*method, f"{key}={value}"])


def test_command_line_choices_are_the_registries() -> None:
    commands = sub_commands(build_parser())

    def choices(command: str, option: str) -> Iterable[Any] | None:
        return next(a.choices for a in commands[command]._actions if option in a.option_strings)

    assert choices("train", "--dataset") == choices("split", "--dataset") == tuple(DATASETS)
    assert choices("eval", "--mode") == choices("predict", "--mode") == tuple(EVAL_MODES)
    assert choices("demo", "--methods") == tuple(METHODS)
    assert next(a.default for a in commands["compare"]._actions if "--methods" in a.option_strings) == list(METHODS)
    assert choices("compare", "--budget") == budgets.BUDGETS  # not a registry, but one list too


@dataclass
class PickySettings(MethodSettings):
    """A toy method's own setting, declared beside its step as every method's are."""

    pickiness: float = 0.5

    def checks(self) -> list[tuple[str, bool, str]]:
        return [*super().checks(), ("pickiness", self.pickiness >= 0.5, "picky wants >= 0.5")]


class Picky(LabelledOnly):
    """A toy method with settings of its own and recipe settings of its own."""

    Settings = PickySettings
    recipe_settings = ("method.pickiness=0.9",)


def test_a_method_declares_its_settings_in_its_own_class() -> None:
    assert recipe.method_settings("fixmatch") == []
    assert recipe.method_settings("dual_teacher") == ["method.shift=50"]
    with METHODS.registered("picky", Picky):
        assert recipe.method_settings("picky") == ["method.pickiness=0.9"]
        cfg = load_config(None, ["method.name=picky", "method.pickiness=0.7"]).method
        assert isinstance(cfg, PickySettings) and cfg.pickiness == 0.7
        with pytest.raises(ConfigError, match="method.pickiness: picky wants >= 0.5"):
            load_config(None, ["method.name=picky", "method.pickiness=0.2"])
        with pytest.raises(
            ConfigError,
            match="method.threshold is not a setting of method 'picky'; its settings: init_from, name, pickiness",
        ):
            load_config(None, ["method.name=picky", "method.threshold=0.9"])
    with pytest.raises(ConfigError, match="'picky' is not one of supervised"):
        recipe.method_settings("picky")


def test_the_comparison_trains_every_registered_method() -> None:
    with METHODS.registered("labelled_only", LabelledOnly):
        options = compare.CompareOptions(data=Path("."), out=Path("."), fractions=["1/8"])
        assert options.methods == list(METHODS) and "labelled_only" in options.methods
        assert compare.check_options(options)[-1] == "labelled_only"
        assert compare.variant_of("labelled_only") == ("labelled_only", ())


@pytest.mark.slow
def test_a_registered_toy_method_trains_without_the_unlabelled_split_it_does_not_read(
    tiny_data, tmp_path: Path
) -> None:
    """Whether training reads the unlabelled split is asked of the method, not of its name: the
    split named here does not exist, and neither the data check nor the loaders look for it."""
    overrides = tiny_overrides(
        tiny_data, tmp_path / "run", "labelled_only", data__unlabeled_split="absent", train__epochs=1
    )
    with METHODS.registered("labelled_only", LabelledOnly):
        cfg = load_config(None, overrides)
        assert not needs_unlabeled(cfg)
        record = train(cfg, progress=False)
    assert 0.0 <= record["student/miou"] <= 1.0
    assert (tmp_path / "run" / "last.safetensors").is_file()


def test_a_mixing_is_one_registered_function() -> None:
    def everything(labels: Tensor, perm: Tensor, gen: torch.Generator, **_: object) -> Tensor:
        return torch.ones_like(labels, dtype=torch.bool)

    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    with MIXINGS.registered("everything", everything):
        assert make_mix_mask("everything", labels, torch.tensor([1, 0]), torch.Generator()).all()


def write_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]], files: dict[str, str]) -> None:
    """An installed distribution as :mod:`importlib.metadata` reads one, in the folder ``root`` (to be
    put on ``sys.path``): ``NAME-0.1.dist-info`` with its METADATA and entry_points.txt, and its files."""
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items()) + "\n"
            for group, points in entry_points.items()
        )
    )
    for path, text in files.items():
        (root / path).write_text(text)


def test_every_registry_takes_entry_points_of_its_own_group() -> None:
    assert ENTRY_POINT_GROUPS == {
        "dualteacher.methods": METHODS,
        "dualteacher.datasets": DATASETS,
        "dualteacher.networks": NETWORKS,
        "dualteacher.mixings": MIXINGS,
        "dualteacher.threshold_modes": THRESHOLD_MODES,
        "dualteacher.eval_modes": EVAL_MODES,
        "dualteacher.trackers": TRACKERS,
    }


def test_an_installed_package_adds_names_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_distribution(
        tmp_path,
        "toy-points",
        {
            "dualteacher.test_toys": {
                "answer": "toy_points:ANSWER",
                "broken": "toy_points_gone:ANSWER",
                "builtin": "toy_points:ANSWER",
            }
        },
        {"toy_points.py": "ANSWER = 42\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("toy", {"builtin": "json:dumps"}, group="dualteacher.test_toys")
    with pytest.warns(RuntimeWarning, match="the package toy-points 0.1 declares toy 'builtin'.*ignoring it"):
        assert set(registry) == {"builtin", "answer", "broken"}
    assert "toy_points" not in sys.modules  # the names are known, nothing imported
    assert registry.get("answer") == 42 and registry.get("builtin").__module__ == "json"
    with pytest.raises(
        PluginError,
        match=r"toy 'broken' is registered by the entry point 'broken = toy_points_gone:ANSWER' "
        r"\(group dualteacher.test_toys\) of the package toy-points 0.1, which failed "
        r"to load: ModuleNotFoundError",
    ):
        registry.get("broken")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("answer", 0)


TOY_METHOD = """
from dataclasses import dataclass

from dualteacher.config import MethodSettings
from dualteacher.methods.supervised import Supervised


@dataclass
class ToySettings(MethodSettings):
    toy_weight: float = 1.0


class ToyMethod(Supervised):
    Settings = ToySettings
"""


@pytest.mark.slow
def test_a_method_of_an_installed_package_is_found_by_the_command_line(tmp_path: Path) -> None:
    """Spawns the CLI with a distribution (its dist-info written here, on PYTHONPATH) that declares
    a method in the ``dualteacher.methods`` entry-point group, and one whose module is missing."""
    write_distribution(
        tmp_path / "site",
        "toy-method",
        {
            "dualteacher.methods": {
                "toy_method": "toy_method:ToyMethod",
                "broken_method": "toy_method_gone:ToyMethod",
            }
        },
        {"toy_method.py": TOY_METHOD},
    )
    src = Path(dualteacher.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(src)])}

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "dualteacher", *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            check=False,
        )

    assert "toy_method" in cli("train", "--help").stdout  # a --method choice
    done = cli("train", "method.name=toy_method", "method.toy_weight=2", "--print-config")
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["method"] == {"name": "toy_method", "init_from": None, "toy_weight": 2.0}
    done = cli("train", "method.name=toy_method", "method.toy_wieght=2")
    assert done.returncode == 2 and "did you mean method.toy_weight?" in done.stderr
    done = cli("train", "method.name=broken_method")
    assert done.returncode == 2
    assert (
        "error: method 'broken_method' is registered by the entry point 'broken_method = toy_method_gone:ToyMethod' "
        "(group dualteacher.methods) of the package toy-method 0.1, which failed to load: ModuleNotFoundError"
    ) in done.stderr
