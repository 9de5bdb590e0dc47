import subprocess
import sys
import textwrap

import pytest
import torch

import sqish_ext
from deploy_models import CONFIG_IDS, CONFIGS, make_model

# torch.jit.script and trace warn that TorchScript is deprecated; supporting it is the point here.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")


def test_scripted_model_matches_eager(model, example):
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(example), model(example), rtol=0, atol=0)


def test_traced_model_matches_eager(model, example):
    traced = torch.jit.trace(model, example)
    torch.testing.assert_close(traced(example), model(example), rtol=0, atol=0)


def test_scripted_sqish_module_alone_matches_eager(example):
    module = sqish_ext.Sqish(alpha=0.2, beta=2.0, gamma=0.5)
    torch.testing.assert_close(torch.jit.script(module)(example), module(example), rtol=0, atol=0)


class CallsFunctional(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, x):
        defaults = sqish_ext.sqish(x)
        mixed = sqish_ext.sqish(x, 0.1, 0.5, self.gamma)
        raw = torch.ops.sqish.sqish(x, torch.tensor(0.3), torch.tensor(1.0), self.gamma)
        return defaults + mixed + raw


def test_scripted_forward_calling_functional_and_raw_op_matches_eager(example):
    model = CallsFunctional()
    torch.testing.assert_close(torch.jit.script(model)(example), model(example), rtol=0, atol=0)


def test_scripted_sqish_function_rejects_negative_beta(example):
    scripted = torch.jit.script(sqish_ext.sqish)
    with pytest.raises(RuntimeError, match="beta must be >= 0"):
        scripted(example, 0.1, -1.0, 1.0)


def test_scripted_model_backpropagates_to_learnable_parameters(example):
    eager, scripted = make_model(True, 3), torch.jit.script(make_model(True, 3))
    eager(example).square().sum().backward()
    scripted(example).square().sum().backward()
    for name in ("alpha", "log_beta", "gamma"):
        torch.testing.assert_close(getattr(scripted.act, name).grad, getattr(eager.act, name).grad)


def run_python(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)


def test_saved_scripts_load_in_fresh_process_after_import(tmp_path, example):
    # One process for every configuration: starting Python with torch takes seconds.
    models = {name: make_model(*config) for config, name in zip(CONFIGS, CONFIG_IDS)}
    for name, model in models.items():
        torch.jit.script(model).save(str(tmp_path / f"{name}.pt"))
    torch.save(example, tmp_path / "x.pt")
    result = run_python(f"""
        import torch, sqish_ext
        x = torch.load({str(tmp_path / 'x.pt')!r})
        for name in {list(models)!r}:
            m = torch.jit.load({str(tmp_path)!r} + f"/{{name}}.pt")
            torch.save(m(x), {str(tmp_path)!r} + f"/{{name}}.out")
    """)
    assert result.returncode == 0, result.stderr
    for name, model in models.items():
        torch.testing.assert_close(torch.load(tmp_path / f"{name}.out"), model(example), rtol=0, atol=0)


def test_loading_without_import_names_the_missing_op(tmp_path, example):
    path = tmp_path / "model.pt"
    torch.jit.script(make_model(False, 1)).save(str(path))
    result = run_python(f"import torch; torch.jit.load({str(path)!r})")
    assert result.returncode != 0
    assert "Unknown builtin op: sqish::sqish" in result.stderr
