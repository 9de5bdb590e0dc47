"""Plants plausible bugs in the Python layer, one at a time, and shows that the tests kill each.

    .venv/bin/python scripts/mutation_check.py            # every mutant (a few minutes)
    .venv/bin/python scripts/mutation_check.py -k subset  # the mutants whose name contains "subset"

Each mutant is a copy of sqish_ext/ (compiled modules included) in a temporary folder with one
text replacement, imported instead of the checkout's (the tests run from that folder, with it on
PYTHONPATH); the tests named for it run
with -x, and the mutant is killed when they fail. A mutant whose text is not found is an error:
the list must follow the code. Exits 1 when a mutant survives.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (file in sqish_ext/, text, replacement, tests that must kill it)
MUTANTS = {
    "parameter gradients only when all parameters require grad": (
        "ops.py", "needs[1] or needs[2] or needs[3]", "needs[1] and needs[2] and needs[3]",
        "tests/test_autograd.py -k subset"),
    "double backward never records a graph (no third derivatives)": (
        "ops.py", "    create_graph = torch.is_grad_enabled()\n", "    create_graph = False\n",
        "tests/test_autograd.py -k third"),
    "double backward reduces beta with alpha's shape": (
        "ops.py", "reduce(partials.df_dbeta, beta)", "reduce(partials.df_dbeta, alpha)",
        "tests/test_autograd.py -k gradgradcheck_with_mixed"),
    "eager path records only when x requires grad": (
        "ops.py", "torch.is_grad_enabled() and torch._C._any_requires_grad(x, *params)",
        "torch.is_grad_enabled() and x.requires_grad", "tests/test_autograd.py -k subset"),
    "float backward drops grad_x": (
        "ops.py", "*ctx.parameter_values)\n    return grad_x, None, None, None\n",
        "*ctx.parameter_values)\n    return None, None, None, None\n",
        "tests/test_per_call.py -k gradcheck"),
    "in-place op forgets the version bump": (
        "ops.py", "    torch.autograd.graph.increment_version(x)\n", "",
        "tests/test_inplace.py -k version"),
    "in-place op under autograd does not refuse": (
        "ops.py", "if torch.is_grad_enabled() and torch._C._any_requires_grad(x, alpha, beta, gamma):",
        "if False:", "tests/test_inplace.py -k refuses"),
    "inplace=True overwrites even when autograd needs the input": (
        "ops.py", "    if not torch.is_grad_enabled():\n        return True\n    return not (",
        "    return True\n    return not (", "tests/test_inplace.py -k keeps_its_input"),
    "negative Python beta beside tensor parameters passes": (
        "ops.py", 'if name == "beta" and value < 0:', 'if name == "beta" and value < -1e300:',
        "tests/test_errors.py -k beta"),
    "fixed module ignores the old buffer state dict": (
        "nn.py", "                    setattr(self, name, float(state_dict.pop(prefix + name)))",
        "                    state_dict.pop(prefix + name)", "tests/test_module.py -k state_dict"),
    "scripted float call swaps beta and gamma": (
        "ops.py", "a, b, g = _scripted_float(alpha), _scripted_float(beta), _scripted_float(gamma)",
        "a, b, g = _scripted_float(alpha), _scripted_float(gamma), _scripted_float(beta)",
        "tests/test_torchscript.py"),
    "setup_context saves the parameters detached (no double backward through them)": (
        "ops.py", "    ctx.save_for_backward(x, alpha, beta, gamma)\n",
        "    ctx.save_for_backward(x, alpha.detach(), beta.detach(), gamma.detach())\n",
        "tests/test_autograd.py -k gradgradcheck_for_input"),
    "learnable beta used as ln beta itself": (
        "nn.py", "self.alpha, self.log_beta.exp(), self.gamma", "self.alpha, self.log_beta, self.gamma",
        "tests/test_module.py -k beta"),
    "an old learnable-beta state dict loads beta as ln beta": (
        "nn.py", 'state_dict[prefix + "log_beta"] = beta.log()', 'state_dict[prefix + "log_beta"] = beta',
        "tests/test_module.py -k trained_beta_itself"),
    "ONNX formula loses the infinite limits": (
        "decompositions.py", "y * math.inf, y)", "y, y)", "tests/test_onnx.py -k infinite"),
    "ONNX formula treats float64 past float32's range as infinite": (
        "decompositions.py", "infinite = xc.abs() == math.inf", "infinite = xc.isinf()",
        "tests/test_onnx.py -k beyond"),
    "torch.compile records the ONNX formula instead of the op": (
        "ops.py", "            if torch.onnx.is_in_onnx_export():", "            if True:",
        "tests/test_onnx.py -k compiled"),
}


def run_mutant(name, folder):
    file, text, replacement, tests = MUTANTS[name]
    package = Path(folder) / "sqish_ext"
    shutil.copytree(ROOT / "sqish_ext", package, ignore=shutil.ignore_patterns("__pycache__"))
    source = (package / file).read_text()
    if source.count(text) != 1:
        raise SystemExit(f"mutant {name!r}: its text occurs {source.count(text)} times in sqish_ext/{file}")
    (package / file).write_text(source.replace(text, replacement))
    # Run from the mutant's folder: python puts the working directory first on sys.path.
    env = dict(os.environ, PYTHONPATH=folder)
    imported = subprocess.run([sys.executable, "-c", "import sqish_ext; print(sqish_ext.__file__)"], cwd=folder,
                              env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    assert imported.startswith(str(package)), f"the tests would import {imported.strip()}, not the mutant"
    paths, *selection = tests.split(maxsplit=1)
    result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                             "--rootdir", str(ROOT), str(ROOT / paths), *(selection[0].split(maxsplit=1) if selection else [])],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return result.returncode != 0, result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="only mutants whose name contains this")
    args = parser.parse_args()
    survivors = 0
    print("| mutant | killed | tests' last line |")
    print("|---|---|---|")
    for name in MUTANTS:
        if args.k not in name:
            continue
        with tempfile.TemporaryDirectory() as folder:
            killed, last = run_mutant(name, folder)
        survivors += not killed
        print(f"| {name} | {'yes' if killed else 'NO'} | {last} |", flush=True)
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
