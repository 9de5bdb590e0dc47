"""ONNX export with torch.onnx.export alone: models that use sqish_ext record Sqish in
standard operators (sqish_ext.decompositions), which any ONNX runtime runs."""
import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch._inductor.utils import run_and_get_code

import sqish_ext
from deploy_models import CHANNELS, CONFIG_IDS, CONFIGS, make_model
from sqish_ext.decompositions import DECOMPOSITIONS

DYNAMIC_BATCH = ({0: torch.export.Dim("batch")},)
# A scalar Sqish with fixed values (the .float overload) and a learnable per-channel one
# (the tensor overload).
BOTH_OVERLOADS = [(False, 1), (True, CHANNELS)]
BOTH_OVERLOAD_IDS = ["fixed-scalar", "learnable-per-channel"]


def run_onnx(path, x):
    # No custom-op library is registered with this session: standard operators only.
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def eager(model, x):
    with torch.no_grad():
        return model(x)


def wide(dtype=torch.float32):
    """Another batch size than the export's, over the range where the gate turns."""
    return torch.linspace(-30, 30, 4 * CHANNELS * 5 * 6, dtype=dtype).reshape(4, CHANNELS, 5, 6)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export per configuration (the exporter takes about a second each)."""
    paths = {}
    for config, name in zip(CONFIGS, CONFIG_IDS):
        model = make_model(*config)
        path = tmp_path_factory.mktemp(name) / "model.onnx"
        torch.onnx.export(model, (torch.randn(2, CHANNELS, 5, 6),), path, dynamic_shapes=DYNAMIC_BATCH)
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
def test_onnxruntime_matches_pytorch_at_any_batch_size(exported, config, example):
    model, path = exported[config]
    for x in (example, wide()):
        torch.testing.assert_close(run_onnx(path, x), eager(model, x))


@pytest.fixture(scope="module")
def exported_float16(tmp_path_factory):
    """Sqish alone after .half(), per overload: a float16 conv's rounding differs between
    runtimes, and is not ours."""
    paths = {}
    for config, name in zip(BOTH_OVERLOADS, BOTH_OVERLOAD_IDS):
        model = make_model(*config).act.half()
        path = tmp_path_factory.mktemp(name) / "model.onnx"
        torch.onnx.export(model, (torch.randn(2, CHANNELS, 5, 6, dtype=torch.float16),), path,
                          dynamic_shapes=DYNAMIC_BATCH)
        paths[config] = (model, path)
    return paths


@pytest.mark.parametrize("config", BOTH_OVERLOADS, ids=BOTH_OVERLOAD_IDS)
def test_onnxruntime_matches_pytorch_for_float16_model(exported_float16, config):
    model, path = exported_float16[config]
    x = wide(torch.float16)
    y = run_onnx(path, x)
    assert y.dtype == torch.float16
    # Both sides compute in float32 and round to float16 once: one float16 ulp apart where
    # their float32 results straddle a rounding boundary. onnxruntime's Sigmoid approximates,
    # to about 1e-6 absolute in the tails, where f is that small: float32's default atol.
    torch.testing.assert_close(y, eager(model, x), rtol=2**-10, atol=1e-5)


@pytest.mark.parametrize("config", BOTH_OVERLOADS, ids=BOTH_OVERLOAD_IDS)
def test_onnx_float16_model_computes_in_float32_like_the_kernels(exported_float16, config):
    # onnxruntime's CPU provider computes float16 in float32 anyway; other runtimes do not.
    _, path = exported_float16[config]
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    gates = [node for node in model.graph.node if node.op_type == "Sigmoid"]
    assert gates and all(types[node.input[0]] == onnx.TensorProto.FLOAT for node in gates)


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
    torch.onnx.export(model, (x,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", x), eager(model, x))


def test_onnx_model_of_float64_input_computes_in_float64(tmp_path):
    model = Functional().eval()
    x = torch.randn(4, CHANNELS, dtype=torch.float64)
    torch.onnx.export(model, (x,), tmp_path / "model.onnx")
    y = run_onnx(tmp_path / "model.onnx", x)
    assert y.dtype == torch.float64
    # The same float64 formula, evaluated by two libraries' exp and log: a few float64 ulps.
    torch.testing.assert_close(y, eager(model, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16], ids=str)
def test_onnx_model_keeps_infinite_limits_and_nan(tmp_path, dtype):
    # Two channels: α = 0, where f(−∞) = 0, and α = 0.1, where f(−∞) = −∞.
    model = sqish_ext.Sqish(beta=0.5, gamma=0.5, num_parameters=2).eval()
    model.alpha.copy_(torch.tensor([0.0, 0.1]))
    model.to(dtype)
    x = torch.tensor([-np.inf, -1.0, 0.0, 1.0, np.inf, np.nan], dtype=dtype)[:, None].repeat(1, 2)
    torch.onnx.export(model, (x,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", x), eager(model, x), equal_nan=True)


def test_onnx_model_keeps_float64_values_beyond_float32s_range(tmp_path):
    # Infinities are evaluated at float32's largest value; finite inputs past it are not.
    model = Functional().eval()
    x = torch.tensor([1e300, -1e300, 1e39, -3.0], dtype=torch.float64)[:, None].repeat(1, CHANNELS)
    torch.onnx.export(model, (x,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", x), eager(model, x), rtol=1e-12, atol=0)


class InPlace(torch.nn.Module):
    def forward(self, x):
        return sqish_ext.sqish_(x * 1.0, 0.1, 0.5, 1.5)


def test_onnxruntime_matches_pytorch_for_in_place_sqish(tmp_path, example):
    torch.onnx.export(InPlace().eval(), (example,), tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", example), eager(InPlace(), example))


class CallsTheOp(torch.nn.Module):
    """Calls the ops themselves, not sqish_ext's API: both overloads."""

    def __init__(self):
        super().__init__()
        self.register_buffer("alpha", torch.tensor([0.0, 0.2, 0.5]))

    def forward(self, x):
        y = torch.ops.sqish.sqish(x, 0.1, 0.5, 1.5)
        return torch.ops.sqish.sqish(y, self.alpha, torch.tensor(1.0), torch.tensor(2.0))


def test_export_of_the_op_itself_fails_naming_it(tmp_path, example):
    with pytest.raises(Exception, match=r"sqish\.sqish"):
        torch.onnx.export(CallsTheOp().eval(), (example,), tmp_path / "model.onnx")


def test_decompositions_make_a_program_holding_the_op_exportable(tmp_path, example):
    program = torch.export.export(CallsTheOp().eval(), (example,)).run_decompositions(DECOMPOSITIONS)
    torch.onnx.export(program, f=tmp_path / "model.onnx")
    torch.testing.assert_close(run_onnx(tmp_path / "model.onnx", example), eager(CallsTheOp(), example))


@pytest.mark.filterwarnings("ignore:dynamo_pgo force disabled")  # by the caches' switch, as asked
@pytest.mark.parametrize("config", BOTH_OVERLOADS, ids=BOTH_OVERLOAD_IDS)
def test_compiled_model_still_calls_the_op(monkeypatch, config, example):
    # With CI set, Inductor refuses to fall back to an op that has a decomposition in torch's
    # global table; caches off, so that it lowers the graph here.
    monkeypatch.setenv("CI", "1")
    model = make_model(*config).act
    with torch._inductor.config.patch(force_disable_caches=True):
        _, code = run_and_get_code(torch.compile(model, fullgraph=True), example)
    overload = "float" if config == (False, 1) else "default"
    assert f"torch.ops.sqish.sqish.{overload}(" in "\n".join(code)
