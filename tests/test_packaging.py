"""What `pip install` gets: a wheel built from a copy of the checkout holds the package with its
worker and command line, the `py.typed` marker and the license, under the distribution name that
the README and the `durable --version` lookup use."""

from __future__ import annotations

import email
import email.message
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DISTRIBUTION = PYPROJECT["project"]["name"]
#: what the build does not need (and must not write into)
NOT_COPIED = shutil.ignore_patterns(".git", ".venv", ".durable", ".hypothesis", ".mypy_cache", ".pytest_cache",
                                    "__pycache__", "*.egg-info", "build", "dist")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=NOT_COPIED, symlinks=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "out"),
                           str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [built] = (tmp / "out").glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_distribution_is_not_named_like_the_other_durable_on_pypi() -> None:
    assert DISTRIBUTION == "durable-workflows"
    assert PYPROJECT["project"]["scripts"] == {"durable": "durable.cli:main"}


def test_the_wheel_holds_the_package_its_worker_cli_and_type_marker(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for required in ("durable/__init__.py", "durable/py.typed", "durable/worker/__init__.py",
                     "durable/cli/__init__.py", "durable/_defs.py"):
        assert required in names, f"{required} is not in the wheel"
    assert not any(n.startswith(("tests/", "examples/", "bench/")) for n in names)


def test_the_wheel_metadata_names_the_distribution_license_and_project(wheel: zipfile.ZipFile) -> None:
    meta = _metadata(wheel)
    assert meta["Name"] == DISTRIBUTION
    assert meta["Version"] == PYPROJECT["project"]["version"]
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License-File"] == "LICENSE"
    assert "Typing :: Typed" in meta.get_all("Classifier", [])
    assert meta.get_all("Author") or meta.get_all("Author-email")
    assert any(url.startswith("Source, https://") for url in meta.get_all("Project-URL", []))
    [license_file] = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in wheel.read(license_file) and b"Version 2.0" in wheel.read(license_file)


def test_the_readme_installs_the_distribution_by_its_name() -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"pip install {DISTRIBUTION}" in readme
    assert "pip install durable\n" not in readme and "pip install durable " not in readme


def test_durable_version_reads_the_installed_distribution() -> None:
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "durable", "--version"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"durable, version {version(DISTRIBUTION)}"
