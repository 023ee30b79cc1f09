"""Configuration: YAML + overrides, errors that name the key, round trip."""

from pathlib import Path

import pytest

from dualteacher.config import ConfigError, config_from_dict, load_config, save_config
from dualteacher.methods.dual_teacher import DualTeacherSettings


def test_overrides_apply_and_parse_types(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 3\nmethod:\n  name: dual_teacher\n")
    cfg = load_config(
        path, ["train.epochs=40", "optim.lr=1e-3", "method.mixings=[classmix, cutmix]", "model.weights=null"]
    )
    assert cfg.train.epochs == 40
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert isinstance(cfg.method, DualTeacherSettings) and cfg.method.mixings == ("classmix", "cutmix")
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
    one_for_all = load_config(None, ["method.name=dual_teacher", "method.mixings=[cutmix]"]).method
    assert isinstance(one_for_all, DualTeacherSettings) and one_for_all.mixings == ("cutmix",)
    with pytest.raises(ConfigError, match=r"method.mixings: give one mixing per teacher \(2\) or a single one for all"):
        load_config(None, ["method.name=dual_teacher", three])
    with pytest.raises(ConfigError, match=r"method.mixings: this method mixes with one mixing"):
        load_config(None, ["method.name=mean_teacher", three])
    with pytest.raises(
        ConfigError, match=r"method.icl_weight is not a setting of method 'mean_teacher'; its settings: .*threshold"
    ):
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


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        (["train.epohcs=3"], "unknown setting train.epohcs; did you mean train.epochs?"),
        (["trian.epochs=3"], "unknown setting trian; did you mean train?"),
        (
            ["method.name=dual_teacher", "method.icl_wieght=1"],
            "method.icl_wieght is not a setting of method 'dual_teacher'; did you mean method.icl_weight? its settings:",
        ),
        (
            ["method.name=dual_teachr"],
            (
                "method.name: 'dual_teachr' is not one of supervised, mean_teacher, dual_teacher, "
                "fixmatch, unimatch; did you mean dual_teacher?"
            ),
        ),
        (["train.amp=bf61"], "train.amp: 'bf61' is not one of auto, bf16, fp16, off; did you mean bf16?"),
        (["data.dataset=folders"], "did you mean folder?"),
        (
            ["method.name=fixmatch", "method.threshold_mode=pixle"],
            ("method.threshold_mode: 'pixle' is not one of pixel, fraction, none; did you mean pixel?"),
        ),
        (
            ["method.name=dual_teacher", "method.mixings=[cutmix, clasmix]"],
            ("unknown mixing: 'clasmix' is not one of cutmix, classmix, none; did you mean classmix?"),
        ),
    ],
)
def test_a_mistyped_setting_or_choice_suggests_the_nearest(overrides: list[str], hint: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert hint in str(error.value)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, ["method.name=mean_teacher", "method.icl_weight=0.2"])
    assert "did you mean" not in str(error.value)  # unsup_weight is not what was meant


def test_an_error_about_a_key_of_a_yaml_file_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 3\n  batch_sise: 4\nmethod:\n  name: dual_teacher\n  icl_wieght: 0.1\n")
    with pytest.raises(
        ConfigError, match=rf"^{path}:3: unknown setting train.batch_sise; did you mean train.batch_size"
    ):
        load_config(path)
    path.write_text("train:\n  epochs: 3\nmethod:\n  name: dual_teacher\n  icl_wieght: 0.1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:5: method.icl_wieght is not a setting"):
        load_config(path)
    with pytest.raises(
        ConfigError, match=r"^method.icl_wieght is not a setting"
    ):  # the override's typo, not the file's
        load_config(path, ["method.icl_wieght=0.3"])
    path.write_text("data:\n  root: x\ntrain:\n\n  epochs: three\n")
    with pytest.raises(ConfigError, match=rf"^{path}:5: train.epochs: expected an integer"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^train.epochs: must be >= 1"):  # set by the override, not the file
        load_config(path, ["train.epochs=0"])
