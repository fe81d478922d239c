"""``mypy --strict`` on the package as it is installed, on examples/ and on check_api.py.

The package is checked in its installed layout (durable.worker and durable.cli inside durable/,
made of symlinks into the source tree), so that every import resolves as it does for a user;
pyproject.toml's [tool.mypy] applies. check_api.py states the types users see: its
`assert_type` calls and its ``# type: ignore[code]`` lines are checked by mypy itself (--strict
includes --warn-unused-ignores), its ``reveal_type(x)  # revealed: T`` lines by this test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "check_api.py"


def installed_layout(where: Path) -> Path:
    """A directory holding durable/ as pip installs it, examples/ and check_api.py (symlinks)."""
    package = where / "durable"
    package.mkdir()
    for entry in (ROOT / "durable").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (where / "examples").symlink_to(ROOT / "examples")
    (where / "check_api.py").symlink_to(CHECKS)
    return where


def mypy(where: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(where / ".mypy_cache"), "--no-error-summary", "--show-error-codes",
         "--hide-error-context", "--no-pretty", *targets],
        cwd=where, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    where = installed_layout(tmp_path_factory.mktemp("typing"))
    return mypy(where, "durable", "examples", "check_api.py")


def test_mypy_strict_passes_on_the_package_the_examples_and_the_api_checks(
    checked: subprocess.CompletedProcess[str],
) -> None:
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    assert checked.returncode == 0 and errors == [], checked.stdout + checked.stderr


def _expected_reveals() -> dict[int, str]:
    """Line number -> the type that line's ``# revealed:`` comment names."""
    out = {}
    for number, line in enumerate(CHECKS.read_text().splitlines(), start=1):
        match = re.match(r"reveal_type\(.*\)\s+# revealed: (.+)$", line)
        if match:
            out[number] = match.group(1).strip()
    return out


def test_revealed_types_are_the_expected_ones(checked: subprocess.CompletedProcess[str]) -> None:
    shown = {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'^check_api\.py:(\d+): note: Revealed type is "(.*)"$', checked.stdout, re.M)
    }
    expected = _expected_reveals()
    assert len(expected) >= 6
    assert shown == expected


def test_each_expected_error_is_an_error(tmp_path: Path) -> None:
    """Without its ``# type: ignore[...]`` comments, check_api.py fails on exactly those lines,
    with the codes they name: the checks above are not passing for want of checking."""
    source = CHECKS.read_text().splitlines()
    ignored: dict[int, set[str]] = {}
    stripped = []
    for number, line in enumerate(source, start=1):
        match = re.search(r"\s+# type: ignore\[([a-z-, ]+)\]", line)
        if match:
            ignored[number] = {code.strip() for code in match.group(1).split(",")}
            line = line[: match.start()] + line[match.end():]
        stripped.append(line)
    assert len(ignored) >= 10
    where = installed_layout(tmp_path)
    (where / "check_api.py").unlink()
    (where / "check_api.py").write_text("\n".join(stripped) + "\n")
    result = mypy(where, "check_api.py")
    found: dict[int, set[str]] = {}
    for m in re.finditer(r"^check_api\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.M):
        found.setdefault(int(m.group(1)), set()).add(m.group(2))
    assert result.returncode == 1
    assert found == ignored, result.stdout
