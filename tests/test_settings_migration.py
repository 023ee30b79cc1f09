"""Checkpoints and run directories written before each method declared its own settings keep
working: their single shared ``method`` section is read as the method's own settings.

``fixtures/method_sections_0.1.0.json`` holds the ``method`` sections of real checkpoints written
by dualteacher 0.1.0 (commit 4cb460e, the built-in recipe, one per method)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dualteacher import load_model
from dualteacher.checkpoint import module_tensors, save_checkpoint
from dualteacher.config import ConfigError, config_from_dict, load_config, migrate_method
from dualteacher.inference.model import checkpoint_card
from dualteacher.methods.common import PseudoLabelSettings
from dualteacher.methods.dual_teacher import DualTeacherSettings
from dualteacher.models.build import model_from_config, model_normalization
from dualteacher.models.contract import normalize
from dualteacher.registry import METHODS

from conftest import tiny_overrides

SECTIONS = json.loads((Path(__file__).parent / "fixtures" / "method_sections_0.1.0.json").read_text())


@pytest.mark.parametrize("method", sorted(SECTIONS))
def test_a_0_1_0_method_section_becomes_the_methods_own_settings(method: str) -> None:
    cfg = config_from_dict({"method": SECTIONS[method], "train": {"iters_per_epoch": 10}}).method
    assert cfg.name == method and type(cfg) is METHODS.get(method).Settings
    if isinstance(cfg, PseudoLabelSettings):
        assert (cfg.threshold, cfg.student_drop_path) == (0.95, SECTIONS[method]["student_drop_path"])
        mixings = vars(cfg)["mixings"]  # a field of each pseudo-label method's own settings
        assert mixings == tuple(SECTIONS[method]["mixings"][: 2 if method == "dual_teacher" else 1])
    if isinstance(cfg, DualTeacherSettings):
        assert (cfg.shift, cfg.icl_weight, cfg.num_teachers) == ("epoch", 0.2, 2)  # one epoch a shift, as then


def test_only_a_complete_0_1_0_section_is_migrated() -> None:
    today = {"name": "mean_teacher", "icl_weight": 0.2}
    assert migrate_method(today, None) is today  # today's form: an unknown key stays an error
    with pytest.raises(ConfigError, match="method.icl_weight is not a setting of method 'mean_teacher'"):
        config_from_dict({"method": today})
    longer = {**SECTIONS["dual_teacher"], "shift_period": 2}
    assert migrate_method(longer, 50)["shift"] == 100
    with pytest.raises(ConfigError, match="shift_period=2 .* cannot be converted"):
        migrate_method(longer, None)


def test_a_checkpoint_with_a_0_1_0_header_loads_and_predicts(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / "run", "mean_teacher"))
    torch.manual_seed(0)
    network = model_from_config(cfg.model, 11, drop_path=0.0, pretrained=False)
    card = checkpoint_card(cfg, [f"c{i}" for i in range(11)], model_normalization(cfg.model))
    card["config"]["method"] = SECTIONS["mean_teacher"]
    path = tmp_path / "best.safetensors"
    save_checkpoint(
        path,
        module_tensors("model", network),
        {"kind": "model", "role": "student", "iteration": 1, "metrics": {}, **card},
    )
    model = load_model(path)
    assert model.state["config"]["method"]["name"] == "mean_teacher"
    images = torch.rand(2, 3, 48, 48)
    network.eval()
    with torch.no_grad():
        assert torch.equal(model.logits(images), network(normalize(images, model.mean, model.std)))
