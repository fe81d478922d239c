"""The source tree is the import tree: a checkout imports as it installs.

`durable.worker` and `durable.cli` once lived in top-level folders mapped into the package by
the installer, so a plain checkout on `sys.path` could not import them. They are subpackages
now; the top-level `worker` and `cli` are symbolic links that show the project's three parts.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT


def test_a_checkout_on_sys_path_imports_the_worker_and_the_cli_from_itself() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import durable.worker, durable.cli; "
            "print(durable.worker.__file__); print(durable.cli.__file__)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], cwd="/", capture_output=True, text=True,
                         timeout=60, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(ROOT / "durable" / "worker" / "__init__.py"),
                                       str(ROOT / "durable" / "cli" / "__init__.py")]


def test_the_top_level_worker_and_cli_are_the_subpackages() -> None:
    for name in ("worker", "cli"):
        link = ROOT / name
        assert link.is_symlink() and link.resolve() == (ROOT / "durable" / name).resolve()
