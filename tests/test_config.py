"""Configuration: YAML + overrides, errors that name the key, round trip."""

from pathlib import Path

import pytest

from dualteacher.config import ConfigError, config_from_dict, load_config, save_config


def test_overrides_apply_and_parse_types(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 3\nmethod:\n  name: dual_teacher\n")
    cfg = load_config(path, ["train.epochs=40", "optim.lr=1e-3", "method.mixings=[classmix, cutmix]", "model.weights=null"])
    assert cfg.train.epochs == 40
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.method.mixings == ("classmix", "cutmix")
    assert cfg.method.name == "dual_teacher"
    assert cfg.model.weights is None


def test_a_bare_off_is_the_choice_not_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  amp: off\n")
    assert load_config(path).train.amp == "off"
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    with pytest.raises(ConfigError, match="data.eval_mode"):
        load_config(None, ["data.eval_mode=off"])


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("train.epohcs=3", "train.epohcs"),
        ("trian.epochs=3", "trian"),
        ("train.epochs=three", "train.epochs"),
        ("train.epochs=0", "train.epochs"),
        ("method.name=cps", "method.name"),
        ("method.threshold=1.5", "method.threshold"),
        ("method.mixings=[cutmix, blend]", "method.mixings"),
        ("data.scale_range=[1.0]", "data.scale_range"),
        ("train.deterministic=maybe", "train.deterministic"),
        ("noequals", "key=value"),
    ],
)
def test_bad_settings_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
        load_config(None, [override])


def test_dual_teacher_asks_one_mixing_per_teacher_or_one_for_all() -> None:
    three = "method.mixings=[cutmix, classmix, cutmix]"
    assert load_config(None, ["method.name=dual_teacher", "method.mixings=[cutmix]"]).method.mixings == ("cutmix",)
    with pytest.raises(ConfigError, match=r"method.mixings: give one mixing per teacher \(2\) or a single one for all"):
        load_config(None, ["method.name=dual_teacher", three])
    with pytest.raises(ConfigError, match=r"method.mixings: this method mixes with one mixing"):
        load_config(None, ["method.name=mean_teacher", three])
    with pytest.raises(ConfigError, match=r"method.icl_weight is not a setting of method 'mean_teacher'; its settings: .*threshold"):
        load_config(None, ["method.name=mean_teacher", "method.icl_weight=0.2"])


def test_unknown_key_in_yaml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  encdoer: resnet50\n")
    with pytest.raises(ConfigError, match="model.encdoer"):
        load_config(path)


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("run_dir: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["method.name=mean_teacher", "data.scale_range=[0.5, 1.5]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
