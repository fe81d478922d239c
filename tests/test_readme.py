"""The README's commands and snippets, run verbatim as a newcomer types them.

A suite that never typed the README's own commands once let its first command fail. Here every
fenced block of the README that holds `durable` commands runs line by line in a shell, in a fresh
directory, against a real worker process started by the README's own worker command; the client
snippet runs as written; the example shown is the file in examples/.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def _blocks(text: str) -> list[str]:
    """The fenced code blocks of a Markdown text, in order."""
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def _command_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _durable_blocks() -> list[list[str]]:
    """Blocks whose commands are `durable ...` (and the `export` lines between them)."""
    out = []
    for block in _blocks(README):
        lines = _command_lines(block)
        if lines and all(re.match(r"(durable |export )", line) for line in lines):
            out.append(lines)
    return out


def _python_block(starts_with: str) -> str:
    [block] = [b for b in _blocks(README) if b.startswith(starts_with)]
    return block


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("DURABLE_DATA", None)
    env.pop("DURABLE_STORE", None)
    env.pop("DURABLE_CODEC", None)
    return env


def test_the_readme_example_is_the_file_in_examples() -> None:
    block = _python_block("# examples/hello.py\n")
    source = (ROOT / "examples" / "hello.py").read_text()
    # the README shows the file from its first line of code on, each line as it is in the file
    body = block.split("\n", 1)[1]
    assert body.strip() in source, "the README's hello example differs from examples/hello.py"


def test_readme_commands_run_verbatim(tmp_path: Path) -> None:
    blocks = _durable_blocks()
    [worker_block] = [b for b in blocks if any(line.startswith("durable worker ") for line in b)]
    [worker_line] = worker_block
    cli_blocks = [b for b in blocks if b is not worker_block]
    assert cli_blocks, "the README shows no durable commands to drive workflows"
    env = _env(tmp_path)

    # the worker exactly as the README writes it, in a fresh directory
    worker = subprocess.Popen(["bash", "-c", f"exec {worker_line}"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log: list[str] = []
    serving = threading.Event()

    def read_log() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            log.append(line)
            if "serving queue" in line:
                serving.set()

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        assert serving.wait(30), f"the README's worker command did not start: {''.join(log)}"
        assert (tmp_path / ".durable").is_dir()

        # the client snippet as written, with the imports it takes for granted
        snippet = _python_block('client = durable.Client("./.durable")')
        runs = _python_block("h1 = client.start(")  # ids and runs: the same client goes on
        script = "import durable\nfrom examples.hello import Approval, three_steps\n" + snippet + runs
        proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr

        # each command line of each block, in order, in one shell so that `export` carries on
        for block in cli_blocks:
            for line in block:
                expected = None
                if "# -> " in line:
                    expected = line.split("# -> ", 1)[1].strip()
                proc = subprocess.run(["bash", "-c", _with_exports(block, line)], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=60)
                assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
                assert "Traceback" not in proc.stderr, (line, proc.stderr)
                if expected is not None:
                    assert proc.stdout.strip() == expected, (line, proc.stdout)
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        reader.join(10)
        if worker.stderr is not None:
            worker.stderr.close()
    assert worker.returncode == 0, "".join(log)


def _with_exports(block: list[str], line: str) -> str:
    """`line` preceded by the `export` lines above it in its block (each command runs alone)."""
    exports = [e for e in block[: block.index(line)] if e.startswith("export ")]
    return "\n".join([*exports, line])


def test_readme_commands_name_only_real_options() -> None:
    """Every option a README command uses is one its command's --help shows."""
    env = _env(Path("."))
    helps: dict[str, str] = {}
    for block in _durable_blocks():
        for line in block:
            if not line.startswith("durable "):
                continue
            words = shlex.split(line, comments=True)
            command = words[1]
            if command == "schedule":  # a group: its subcommand has the options
                command = f"schedule {words[2]}"
            if command not in helps:
                helps[command] = subprocess.run([str(BIN / "durable"), *command.split(), "--help"], env=env,
                                                capture_output=True, text=True, timeout=60).stdout
            for word in words[2:]:
                if word.startswith("--"):
                    assert word.split("=")[0] in helps[command], f"{line!r}: {command} --help lacks {word}"


def test_readme_schedules_snippet_runs(tmp_path: Path) -> None:
    """The Python of the Schedules section as written (no worker: schedules are in the store)."""
    block = _python_block("import datetime as dt\n\nclient = durable.Client(")
    checks = """
assert report.describe().actions_started == 1 and len(client.list(schedule="report")) == 1
assert client.list(schedule="report")[0].schedule_id == "report"
assert [s.schedule_id for s in client.list_schedules()] == ["report"]
"""
    script = "import durable\nfrom examples.hello import three_steps\n" + block + checks
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_dev_script_names_what_the_readme_promises() -> None:
    """The two set-up commands at the top of the README are the ones ./dev offers."""
    first = _blocks(README)[0]
    assert "./dev demo" in first and "./dev test" in first
    dev = (ROOT / "dev").read_text()
    assert re.search(r"^\s*demo\)", dev, flags=re.M) and re.search(r"^\s*test\)", dev, flags=re.M)


def test_the_demo_runs_clean(tmp_path: Path) -> None:
    """The README's first command: results, the history, and no warning or error on the way."""
    env = dict(os.environ, DURABLE_DATA=str(tmp_path / "store"))
    proc = subprocess.run([str(ROOT / "dev"), "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "three_steps(1) = 5" in proc.stdout and 'Approval result: "approved"' in proc.stdout
    assert "WorkflowCompleted" in proc.stdout
    noisy = [line for line in proc.stderr.splitlines() if re.search(r"warning|error|traceback", line, re.I)
             and "pypi" not in line and "setuptools" not in line.lower()]
    assert noisy == [], noisy


def test_the_testing_snippet_runs_verbatim_under_pytest(tmp_path: Path) -> None:
    """The README's test of the hello example, as a user's test file run by pytest (the plugin
    giving `durable_env` loaded from the installed package). The durations it reports are the
    figure the README's "in milliseconds" stands on (printed, not asserted)."""
    (tmp_path / "test_hello.py").write_text(_python_block("# test_hello.py\n"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                           "--strict-markers", "--durations=0", "--durations-min=0", "test_hello.py"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout

def test_the_readme_account_excerpt_is_the_file_in_examples() -> None:
    block = _python_block("# examples/account.py\n")
    source = (ROOT / "examples" / "account.py").read_text()
    body = block.split("\n", 1)[1]
    assert body.rstrip() in source, "the README's account excerpt differs from examples/account.py"


def test_the_readme_cart_excerpt_is_the_file_in_examples() -> None:
    block = _python_block("# examples/cart.py\n")
    source = (ROOT / "examples" / "cart.py").read_text()
    body = block.split("\n", 1)[1]
    assert body.rstrip() in source, "the README's cart excerpt differs from examples/cart.py"
