"""One registry per extension point: every name resolves, and the configuration checks, the
command line, the recipe and the comparison read their names from the registries, so a method
registered from this file alone trains through ``train()``."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import Tensor

from conftest import tiny_overrides
from method_contract import MethodContract
from dualteacher.experiments import compare
from dualteacher.experiments import recipe
from dualteacher.semi.augment import make_mix_mask, no_mixing
from dualteacher.cli import build_parser, sub_commands
from dualteacher.config import ConfigError, MethodConfig, load_config
from dualteacher.data.check import needs_unlabeled
from dualteacher.data.source import DataSource
from dualteacher.training.loop import train
from dualteacher.inference.modes import EvalMode
from dualteacher.semi.losses import supervised_ce
from dualteacher.methods import Batch, Method
from dualteacher.registry import DATASETS, EVAL_MODES, METHODS, MIXINGS, THRESHOLD_MODES, Registry


class LabelledOnly(Method):
    """A toy method that reads no unlabelled batch."""

    uses_unlabeled = False

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        loss = supervised_ce(self.net(self.norm(labeled.image)), labeled.mask)
        return loss, {"loss_sup": loss.detach()}


class TestLabelledOnlyContract(MethodContract):
    method = LabelledOnly


@pytest.mark.parametrize(("registry", "kind"), [
    (METHODS, Method), (DATASETS, DataSource), (EVAL_MODES, EvalMode),
])
def test_every_class_entry_resolves_and_names_itself(registry: Registry, kind: type) -> None:
    for name in registry:
        target = registry.get(name)
        assert isinstance(target, kind) or issubclass(target, kind), name
        assert registry.name_of(target) == name


@pytest.mark.parametrize("registry", [MIXINGS, THRESHOLD_MODES])
def test_every_function_entry_resolves(registry: Registry) -> None:
    assert all(callable(registry.get(name)) for name in registry)


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


@pytest.mark.parametrize(("registry", "key", "value", "target"), [
    (METHODS, "method.name", "toy", LabelledOnly),
    (DATASETS, "data.dataset", "toy", DataSource),
    (EVAL_MODES, "data.eval_mode", "toy", EvalMode()),
    (THRESHOLD_MODES, "method.threshold_mode", "toy", lambda confident, valid: valid),
    (MIXINGS, "method.mixings", "[toy]", no_mixing),
])
def test_config_validation_reads_the_registries(registry: Registry, key: str, value: str, target: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config(None, [f"{key}={value}"])
    with registry.registered("toy", target):
        load_config(None, [f"{key}={value}"])


def test_command_line_choices_are_the_registries() -> None:
    commands = sub_commands(build_parser())

    def choices(command: str, option: str) -> tuple[str, ...]:
        return next(a.choices for a in commands[command]._actions if option in a.option_strings)

    assert choices("train", "--dataset") == choices("split", "--dataset") == tuple(DATASETS)
    assert choices("eval", "--mode") == choices("predict", "--mode") == tuple(EVAL_MODES)
    assert choices("demo", "--methods") == tuple(METHODS)
    assert next(a.default for a in commands["compare"]._actions if "--methods" in a.option_strings) == list(METHODS)
    assert choices("compare", "--budget") == compare.BUDGETS  # not a registry, but one list too


class Picky(LabelledOnly):
    """A toy method with recipe settings of its own and a config check of its own."""

    recipe_settings = ("method.student_drop_path=0.0",)

    @classmethod
    def check_config(cls, cfg: MethodConfig) -> None:
        if cfg.threshold < 0.5:
            raise ConfigError("method.threshold: picky wants >= 0.5")


def test_the_recipe_and_the_config_check_ask_the_method_class() -> None:
    assert recipe.method_settings("fixmatch") == ["method.mixings=[cutmix]", "method.student_drop_path=0.0"]
    assert recipe.method_settings("dual_teacher") == []
    with METHODS.registered("picky", Picky):
        assert recipe.method_settings("picky") == ["method.student_drop_path=0.0"]
        assert load_config(None, ["method.name=picky", "method.threshold=0.9"]).method.name == "picky"
        with pytest.raises(ConfigError, match="picky wants"):
            load_config(None, ["method.name=picky", "method.threshold=0.2"])
    with pytest.raises(ConfigError, match="'picky' is not one of supervised"):
        recipe.method_settings("picky")


def test_the_comparison_trains_every_registered_method() -> None:
    with METHODS.registered("labelled_only", LabelledOnly):
        options = compare.CompareOptions(data=Path("."), out=Path("."), fractions=["1/8"])
        assert options.methods == list(METHODS) and "labelled_only" in options.methods
        assert compare.check_options(options)[-1] == "labelled_only"
        assert compare.variant_of("labelled_only") == ("labelled_only", ())


@pytest.mark.slow
def test_a_registered_toy_method_trains_without_the_unlabelled_split_it_does_not_read(tiny_data, tmp_path: Path) -> None:
    """Whether training reads the unlabelled split is asked of the method, not of its name: the
    split named here does not exist, and neither the data check nor the loaders look for it."""
    overrides = tiny_overrides(tiny_data, tmp_path / "run", "labelled_only", data__unlabeled_split="absent", train__epochs=1)
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
