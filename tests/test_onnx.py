import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import sqish_ext
import sqish_ext.onnx
from deploy_models import CHANNELS, CONFIG_IDS, CONFIGS, make_model

def run_onnx(path, x):
    # No custom-op library is registered with this session: standard operators only.
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export per configuration (the exporter takes about a second each)."""
    paths = {}
    for config, name in zip(CONFIGS, CONFIG_IDS):
        model = make_model(*config)
        path = tmp_path_factory.mktemp(name) / "model.onnx"
        sqish_ext.onnx.export(model, (torch.randn(2, CHANNELS, 5, 6),), path,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        paths[config] = (model, path)
    return paths


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_onnx_model_passes_checker(exported, config):
    _, path = exported[config]
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_onnx_model_uses_only_standard_operators(exported, config):
    _, path = exported[config]
    graph = onnx.load(str(path)).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}
    assert {f.domain for f in onnx.load(str(path)).functions} == set()


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_onnxruntime_matches_pytorch(exported, config, example):
    model, path = exported[config]
    wide = torch.linspace(-30, 30, 4 * CHANNELS * 5 * 6).reshape(4, CHANNELS, 5, 6)
    for x in (example, wide):
        torch.testing.assert_close(run_onnx(path, x), eager(model, x))


class Functional(torch.nn.Module):
    """sqish_ext.sqish with every parameter mix: scalar float, per-channel tensor, 0-dim tensor."""

    def __init__(self):
        super().__init__()
        self.register_buffer("alpha", torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64))
        self.register_buffer("gamma", torch.tensor(0.75))

    def forward(self, x):
        return sqish_ext.sqish(x, self.alpha, 2.0, self.gamma)


@pytest.mark.parametrize("shape", [(7, CHANNELS), (2, CHANNELS, 9), (1, CHANNELS, 2, 3, 4)],
                         ids=["rank2", "rank3", "rank5"])
def test_onnxruntime_matches_pytorch_for_mixed_parameters_at_any_rank(tmp_path, shape):
    model = Functional().eval()
    x = torch.randn(shape) * 5
    sqish_ext.onnx.export(model, (x,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", x), eager(model, x))


def test_onnx_model_of_float64_input_computes_in_float64(tmp_path):
    model = Functional().eval()
    x = torch.randn(4, CHANNELS, dtype=torch.float64)
    sqish_ext.onnx.export(model, (x,), tmp_path / "model.onnx")
    y = run_onnx(tmp_path / "model.onnx", x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, eager(model, x), rtol=1e-12, atol=1e-12)


def test_onnx_model_keeps_infinite_limits_and_nan(tmp_path):
    model = sqish_ext.Sqish(alpha=0.0, beta=1.0, gamma=0.5).eval()
    x = torch.tensor([[-np.inf, -1.0, 0.0, 1.0, np.inf, np.nan]])
    sqish_ext.onnx.export(model, (x,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", x), eager(model, x), equal_nan=True)


def test_translation_table_works_with_torch_onnx_export_directly(tmp_path, example):
    model = make_model(True, CHANNELS)
    torch.onnx.export(model, (example,), tmp_path / "model.onnx",
                      custom_translation_table=sqish_ext.onnx.CUSTOM_TRANSLATION_TABLE)
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", example), eager(model, example))


def test_export_without_translation_fails_naming_the_op(tmp_path, example):
    with pytest.raises(Exception, match=r"No ONNX function found for .*sqish\.sqish"):
        torch.onnx.export(make_model(False, 1), (example,), tmp_path / "model.onnx")
