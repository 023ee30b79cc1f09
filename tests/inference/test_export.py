"""ONNX export: onnxruntime reproduces PyTorch for other batch sizes and spatial sizes."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dualteacher import load_model
from dualteacher.cli import main
from dualteacher.inference.export import ExportWrapper, check_onnx
from test_predict import checkpoint  # noqa: F401  (the module-scoped checkpoint fixture)


@pytest.fixture(scope="module")
def exported(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(path), "--no-check"]) == 0
    return path


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


def test_onnx_graph_has_dynamic_axes_and_a_model_card(checkpoint: Path, exported: Path) -> None:  # noqa: F811
    graph = onnx.load(str(exported)).graph
    onnx.checker.check_model(str(exported))
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (graph.input[0], graph.output[0])]
    assert dims == [["batch", 3, "height", "width"], ["batch", 11, "height", "width"]]
    card = json.loads(exported.with_suffix(".json").read_text())
    model = load_model(checkpoint)
    assert card["classes"] == model.classes and card["palette"] == model.palette[:11].tolist()
    assert card["normalization"]["mean"] == list(model.mean) and card["normalization"]["applied_inside_model"]
    assert card["input"]["range"] == [0.0, 1.0] and card["input"]["layout"] == "NCHW"
    assert card["protocol"] == {"mode": "whole", "tile": 48, "stride": None, "flip": False, "scales": [1.0],
                                "resize": None}


def test_export_command_checks_parity(checkpoint: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    assert main(["export", str(checkpoint), "--onnx", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "argmax mismatch 0.00%" in out
    diff = float(out.split("max |logit difference| ")[1].split(",")[0])
    assert np.isfinite(diff) and diff < 1e-3
