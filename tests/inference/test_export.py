"""ONNX export: onnxruntime reproduces PyTorch for other batch sizes and spatial sizes, through the
dynamo exporter, through the TorchScript exporter, and when the dynamo exporter fails and the
TorchScript exporter takes over."""

import contextlib
import dataclasses
import importlib.util
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_predict import checkpoint  # noqa: F401  (the module-scoped checkpoint fixture)
from torch import Tensor

from dualteacher import load_model
from dualteacher.checkpoint import load_checkpoint, save_checkpoint
from dualteacher.cli import main
from dualteacher.config import ModelConfig
from dualteacher.inference.export import (
    ExportWrapper,
    StaticSameConv2d,
    check_onnx,
    export_onnx,
    with_static_same_padding,
)
from dualteacher.models.build import model_from_config
from dualteacher.models.contract import FeaturePerturbation
from dualteacher.models.smp import SegModel
from dualteacher.registry import NETWORKS

needs_onnxscript = pytest.mark.skipif(
    importlib.util.find_spec("onnxscript") is None,
    reason="the dynamo exporter needs onnxscript (pip install 'dualteacher[export]'); without it export falls back",
)


@pytest.fixture(scope="module")
def export_run(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:  # noqa: F811
    """``dualteacher export`` with its parity check: (ONNX path, stdout, stderr)."""
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["export", str(checkpoint), "--onnx", str(path)]) == 0
    return path, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exported(export_run: tuple[Path, str, str]) -> Path:
    return export_run[0]


@pytest.mark.slow  # torch.export of the whole network: 5-20 s
def test_onnx_matches_pytorch_on_other_batch_and_spatial_sizes(checkpoint: Path, exported: Path) -> None:  # noqa: F811
    model = load_model(checkpoint)
    assert model.stride == 16 and model.tile == 48  # exported at 48x48; 37x53 and 70x33 need padding
    result = check_onnx(model, exported, [(1, 48, 48), (3, 37, 53), (2, 70, 33)])
    assert result["max_abs_diff"] < 1e-3
    assert result["argmax_mismatch"] == 0.0
    with torch.no_grad():
        x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(3))
        logits = model.logits(x)
        assert len(logits.argmax(1).unique()) >= 3  # argmax agreement means something
        wrapped = ExportWrapper(model.network, model.mean, model.std, model.stride)(x)
    torch.testing.assert_close(wrapped, logits, atol=1e-5, rtol=0)


@pytest.mark.slow  # torch.export of the whole network: 5-20 s
def test_onnx_graph_has_dynamic_axes_and_a_model_card(checkpoint: Path, exported: Path) -> None:  # noqa: F811
    graph = onnx.load(str(exported)).graph
    onnx.checker.check_model(str(exported))
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (graph.input[0], graph.output[0])
    ]
    assert dims == [["batch", 3, "height", "width"], ["batch", 11, "height", "width"]]
    card = json.loads(exported.with_suffix(".json").read_text())
    model = load_model(checkpoint)
    assert card["classes"] == model.classes and card["palette"] == model.palette[:11].tolist()
    assert card["normalization"]["mean"] == list(model.mean) and card["normalization"]["applied_inside_model"]
    assert card["input"]["range"] == [0.0, 1.0] and card["input"]["layout"] == "NCHW"
    assert card["protocol"] == {
        "mode": "whole",
        "tile": 48,
        "stride": None,
        "flip": False,
        "scales": [1.0],
        "resize": None,
    }
    assert [o.version for o in onnx.load(str(exported)).opset_import if o.domain == ""] == [card["opset"]]


@pytest.mark.slow  # torch.export of the whole network: 5-20 s
@needs_onnxscript
def test_export_goes_through_the_dynamo_exporter(exported: Path) -> None:
    card = json.loads(exported.with_suffix(".json").read_text())
    assert card["exporter"] == "dynamo" and card["opset"] == 18


@pytest.mark.slow  # torch.export of the whole network: 5-20 s
@needs_onnxscript
def test_export_command_checks_parity(export_run: tuple[Path, str, str]) -> None:
    _, out, err = export_run
    assert "with the dynamo exporter" in out and "fell back" not in err
    assert "argmax mismatch 0.00%" in out
    diff = float(out.split("max |logit difference| ")[1].split(",")[0])
    assert np.isfinite(diff) and diff < 1e-3


def test_the_torchscript_exporter_matches_pytorch_too(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    path = tmp_path / "ts.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(path), "--torchscript", "--no-check"]) == 0
    assert "with the torchscript exporter" in capsys.readouterr().out
    assert json.loads(path.with_suffix(".json").read_text())["opset"] == 17
    result = check_onnx(load_model(checkpoint), path, [(3, 37, 53), (1, 48, 48)])
    assert result["max_abs_diff"] < 1e-3 and result["argmax_mismatch"] == 0.0


def test_static_same_padding_is_exact_on_multiples_of_the_stride(checkpoint: Path) -> None:  # noqa: F811
    model = load_model(checkpoint)  # tu-tf_efficientnet_lite0: timm's run-time "same" padding
    static = with_static_same_padding(model.network)
    assert any(isinstance(m, StaticSameConv2d) for m in static.modules())
    x = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = ExportWrapper(model.network, model.mean, model.std, model.stride)(x)
        got = ExportWrapper(static, model.mean, model.std, model.stride)(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


class InputCheckedDeepLab(SegModel):
    """DeepLabV3+ that refuses non-finite inputs: a data-dependent branch, which torch.export
    cannot capture (the dynamo exporter fails) and TorchScript tracing records as taken."""

    def forward(self, x: Tensor, perturb: FeaturePerturbation | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if not bool(torch.isfinite(x).all()):
            raise ValueError("non-finite input")
        return super().forward(x, perturb)


class WidthDependentDeepLab(SegModel):
    """DeepLabV3+ whose logits change sign on inputs wider than 56: TorchScript tracing at the
    48-pixel example freezes the branch, so the ONNX model is wrong on wider inputs."""

    def forward(self, x: Tensor, perturb: FeaturePerturbation | None = None) -> Tensor | tuple[Tensor, Tensor]:
        logits = super().forward(x, perturb)
        return logits if isinstance(logits, tuple) or x.shape[-1] <= 56 else -logits


def builder(cls: type[SegModel]) -> Callable[..., SegModel]:
    def build(model: ModelConfig, num_classes: int, *, drop_path: float, pretrained: bool) -> SegModel:
        inner = model_from_config(
            dataclasses.replace(model, arch="deeplabv3plus"), num_classes, drop_path=drop_path, pretrained=pretrained
        )
        assert isinstance(inner, SegModel)
        return cls(
            inner.net,
            arch=inner.arch,
            encoder_name=inner.encoder_name,
            num_classes=num_classes,
            drop_path_factors=inner._drop_path_factors,
            drop_path=drop_path,
        )

    return build


def with_arch(checkpoint: Path, path: Path, arch: str) -> Path:  # noqa: F811
    """A copy of ``checkpoint`` whose network is built by ``arch`` of NETWORKS."""
    tensors, state = load_checkpoint(checkpoint)
    state["config"]["model"]["arch"] = arch
    save_checkpoint(path, tensors, state)
    return path


@pytest.mark.slow  # torch.export of the whole network: 5-20 s
def test_a_dynamo_failure_falls_back_to_torchscript_and_says_why(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    checked = with_arch(checkpoint, tmp_path / "checked.safetensors", "checked_deeplab")
    with NETWORKS.registered("checked_deeplab", builder(InputCheckedDeepLab)):
        assert main(["export", str(checked), "--onnx", str(tmp_path / "m.onnx")]) == 0
        model = load_model(checked)
    captured = capsys.readouterr()
    note = [line for line in captured.err.splitlines() if "fell back to the TorchScript exporter" in line]
    assert len(note) == 1 and "GuardOnDataDependentSymNode" in note[0]  # one line, naming torch.export's error
    assert "def forward" not in captured.err  # without the traced graph torch.export prints on failure
    assert "with the torchscript exporter" in captured.out and "argmax mismatch 0.00%" in captured.out
    assert json.loads((tmp_path / "m.json").read_text())["exporter"] == "torchscript"
    exported = export_onnx(model, tmp_path / "api.onnx")  # the Python API returns the reason
    assert exported.exporter == "torchscript" and exported.fallback_reason is not None
    assert exported.fallback_reason.split(":")[0] in note[0]


def test_an_export_that_disagrees_with_pytorch_fails_the_command(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    frozen = with_arch(checkpoint, tmp_path / "frozen.safetensors", "width_dependent_deeplab")
    with NETWORKS.registered("width_dependent_deeplab", builder(WidthDependentDeepLab)):
        assert main(["export", str(frozen), "--onnx", str(tmp_path / "m.onnx"), "--torchscript"]) == 1
    assert "disagrees with PyTorch on more than 0.1% of pixels" in capsys.readouterr().err
