"""The package's metadata: one version, and a development environment that pins
exactly what pyproject.toml declares."""
import importlib.metadata
import re
from pathlib import Path

import pytest

import sqish_ext

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(?:\[[^\]]*\])?\s*(?:==\s*([^\s;]+))?")


def parse(requirement):
    """(normalised name, pinned version or None) of a requirement string."""
    name, pin = REQUIREMENT.match(requirement).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), pin


@pytest.fixture(scope="module")
def pyproject():
    tomllib = pytest.importorskip("tomllib", reason="needs Python >= 3.11 to read pyproject.toml")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def declared(pyproject):
    """Every requirement pyproject.toml names: build, run time and each extra."""
    requirements = pyproject["build-system"]["requires"] + pyproject["project"]["dependencies"]
    for extra in pyproject["project"]["optional-dependencies"].values():
        requirements += extra
    return [parse(r) for r in requirements]


def pinned():
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(parse(line) for line in lines if line.strip() and not line.lstrip().startswith("#"))


def test_requirements_txt_pins_exactly_what_pyproject_declares(pyproject):
    assert set(pinned()) == {name for name, _ in declared(pyproject)}
    assert all(version is not None for version in pinned().values()), pinned()


def test_versions_pinned_in_pyproject_are_the_ones_requirements_txt_pins(pyproject):
    mismatched = {name: (pin, pinned()[name]) for name, pin in declared(pyproject) if pin and pin != pinned()[name]}
    assert not mismatched


def test_the_version_is_declared_once_in_the_package(pyproject):
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sqish_ext.__version__"}


def test_installed_metadata_carries_the_package_version():
    assert importlib.metadata.version("sqish-ext") == sqish_ext.__version__
