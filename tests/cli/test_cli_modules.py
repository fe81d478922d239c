"""The modules given to `durable worker` and `durable replay`: what an operator sees when one of
them fails to import (one line naming the module, the error and the line of their code; the
traceback with --debug), and file paths (app/orders.py) accepted for module names.

Modules that fail run in real processes (a fresh interpreter each, in a directory of the test's
own), so that their output is exactly what a terminal shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import durable
from tests.cli.test_cli import cli, fails, ok, serving
from tests.conftest import ROOT, worker_process
from tests.wfs import basic

HINT = "; run with --debug for the traceback"

#: app/orders.py of each case, and the one line the worker command answers with (after "error: ").
BROKEN = {
    "syntax error": (
        "import durable\n\nx = = 1\n",
        "cannot import module 'app.orders': SyntaxError: invalid syntax (app/orders.py, line 3)" + HINT,
    ),
    "error in the module's code": (
        "import durable\n" + "\n" * 10 + "total = undefined_name + 1\n",
        "cannot import module 'app.orders': NameError: name 'undefined_name' is not defined "
        "(app/orders.py, line 12)" + HINT,
    ),
    "error in a function it calls": (
        "def setup():\n    raise RuntimeError('no config')\n\n\nsetup()\n",
        "cannot import module 'app.orders': RuntimeError: no config (app/orders.py, line 2)" + HINT,
    ),
    "error in a library it calls": (
        "import json\n\n\nCONFIG = json.loads('{')\n",
        "cannot import module 'app.orders': JSONDecodeError: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1) (app/orders.py, line 4)" + HINT,
    ),
    "import error inside it": (
        "import durable\nimport no_such_dependency_xyz\n",
        "cannot import module 'app.orders': ModuleNotFoundError: No module named 'no_such_dependency_xyz' "
        "(app/orders.py, line 2)" + HINT,
    ),
    "error in a module it imports": (
        "import durable\nfrom app import helpers\n",
        "cannot import module 'app.orders': ZeroDivisionError: division by zero (app/helpers.py, line 2)" + HINT,
    ),
}
HELPERS = "import os\nRATIO = 1 / 0\n"


def write_app(root: Path, orders: str) -> None:
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text("")
    (root / "app" / "orders.py").write_text(orders)
    (root / "app" / "helpers.py").write_text(HELPERS)


def durable_cmd(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`durable ARGS` as a real process in `cwd`, with the repository importable (no worker
    ever starts: every module given fails to import)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DURABLE_DATA", None)
    return subprocess.run([sys.executable, "-m", "durable", "--data", str(cwd / "store"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize("case", BROKEN)
def test_a_module_that_fails_to_import_is_one_line_naming_where(tmp_path: Path, case: str) -> None:
    orders, message = BROKEN[case]
    write_app(tmp_path, orders)
    assert one_error_line(durable_cmd(tmp_path, "worker", "app.orders")) == message
    assert not (tmp_path / "store").exists()


def test_replay_says_the_same(tmp_path: Path) -> None:
    orders, message = BROKEN["error in the module's code"]
    write_app(tmp_path, orders)
    assert one_error_line(durable_cmd(tmp_path, "replay", "wf-1", "app.orders")) == message


@pytest.mark.parametrize(("case", "line"), [
    ("syntax error", 3), ("error in the module's code", 12), ("import error inside it", 2),
    ("error in a module it imports", 2),
])
def test_debug_shows_the_users_traceback(tmp_path: Path, case: str, line: int) -> None:
    orders, message = BROKEN[case]
    write_app(tmp_path, orders)
    proc = durable_cmd(tmp_path, "--debug", "worker", "app.orders")
    assert proc.returncode == 1 and proc.stdout == ""
    text = proc.stderr
    if case != "syntax error":  # (a syntax error has no frames of the operator's code: only its place)
        assert text.startswith("Traceback (most recent call last):\n"), text
    where = "helpers.py" if "imports" in case else "orders.py"
    assert f'File "{tmp_path / "app" / where}", line {line}' in text, text
    error = message.split(": ", 1)[1].rsplit(" (app/", 1)[0]  # e.g. "NameError: name ... is not defined"
    assert text.splitlines()[-1] == error, text
    assert "<frozen" not in text and "click" not in text, text  # only the operator's code: not ours, not Python's


@pytest.mark.parametrize(("module", "missing"), [("app.nope", "app.nope"), ("nopkg.orders", "nopkg"),
                                                 ("nope_xyz", "nope_xyz")])
@pytest.mark.parametrize("debug", [False, True], ids=["", "debug"])
def test_a_module_not_found_says_where_it_was_looked_for(tmp_path: Path, module: str, missing: str, debug: bool) -> None:
    write_app(tmp_path, "import durable\n")
    proc = durable_cmd(tmp_path, *(["--debug"] if debug else []), "worker", module)
    assert one_error_line(proc) == (
        f"cannot import module {module!r}: no module named {missing!r} in the current directory ({tmp_path}) "
        "or on PYTHONPATH: run durable from the directory that holds it, or add that directory to PYTHONPATH"
    )


# --- file paths for module names ---------------------------------------------------------------


def test_a_worker_runs_the_module_of_a_file_path(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with worker_process(data_dir, "./tests/wfs/basic.py"):
        assert client.start("three_steps", 1, id="wf-1").result(timeout=20) == 5
        assert client.start("slow_chain", 1, 2, 0.0, id="wf-2").result(timeout=20) == 3


def test_replay_takes_a_file_path(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(data_dir, basic):
        assert client.start("three_steps", 1, id="wf-1").result(timeout=20) == 5
    assert os.getcwd() == str(ROOT)
    for path in ("tests/wfs/basic.py", "./tests/wfs/basic.py", str(ROOT / "tests" / "wfs" / "basic.py")):
        assert "the code matches the history" in ok(cli(data_dir, "replay", "wf-1", path))


@pytest.mark.parametrize("command", [["worker"], ["replay", "wf-1"]], ids=["worker", "replay"])
def test_a_file_outside_the_current_directory_is_refused_with_its_module_name(tmp_path: Path, command: list[str]) -> None:
    write_app(tmp_path, "import durable\n")
    path = str(tmp_path / "app" / "orders.py")
    fails(cli(str(tmp_path / "store"), *command, path), 1,
          f"cannot import {path!r}: it is outside the current directory; use app.orders (a module name), "
          f"not {path}, from {tmp_path} (or with {tmp_path} on PYTHONPATH)")
    loose = tmp_path / "script.py"
    loose.write_text("import durable\n")
    fails(cli(str(tmp_path / "store"), *command, str(loose)), 1,
          f"cannot import {str(loose)!r}: it is outside the current directory; use script (a module name), "
          f"not {loose}, from {tmp_path} (or with {tmp_path} on PYTHONPATH)")
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(("path", "message"), [
    ("my-app/orders.py", "cannot import 'my-app/orders.py': 'my-app' is not a valid module name"),
    ("app/nope.py", "cannot import 'app/nope.py': no such file"),
    ("app", "cannot import 'app/': a directory; name a module (e.g. app.orders) or a .py file"),
])
def test_a_path_that_names_no_module_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str,
                                                message: str) -> None:
    write_app(tmp_path, "import durable\n")
    (tmp_path / "my-app").mkdir()
    (tmp_path / "my-app" / "orders.py").write_text("import durable\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command puts the current directory on it
    arg = "app/" if path == "app" else path
    fails(cli(str(tmp_path / "store"), "worker", arg), 1, message)
