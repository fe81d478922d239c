"""`durable ui` as a real process: it serves, stops cleanly, asks for its token when it has one,
says how to install its server when it is missing, and costs a worker nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process
from tests.ui._proc import ui_process
from tests.ui._util import text_of

README = (ROOT / "README.md").read_text()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Message]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def test_durable_ui_serves_the_store_and_stops_on_sigterm(data_dir: str) -> None:
    client = durable.Client(data_dir)
    client.start("three_steps", 1, id="wf-ui")  # no worker: it waits, the UI shows it
    with ui_process(data_dir) as (url, _):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        status, page, headers = get(url)
        assert status == 200 and 'data-id="wf-ui"' in page
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        status, page, _ = get(url + "workflow?id=wf-ui")
        assert status == 200 and "no worker has polled queue 'default'" in text_of(page)


def test_with_a_token_the_url_carries_it_and_nothing_is_served_without_it(data_dir: str) -> None:
    durable.Client(data_dir)
    token = "a-token-of-the-operator-1234"
    with ui_process(data_dir, "--token", token) as (url, _):
        assert url.endswith(f"/?token={token}")
        base = url.split("?")[0]
        assert get(base)[0] == 403
        status, _, headers = get(url)
        assert status == 303 and headers["Location"] == "/"
        cookie = headers["Set-Cookie"].split(";")[0]
        assert get(base, {"Cookie": cookie})[0] == 200


def test_a_missing_store_and_a_bad_token_are_one_line_errors(tmp_path: Path) -> None:
    for args, message in (
        (["--data", str(tmp_path / "none"), "ui"], "no durable store at"),
        (["--data", str(tmp_path / "none"), "ui", "--token", "short"], "--token must be 16 to 200 characters"),
    ):
        if "--token" in args:
            durable.Client(str(tmp_path / "none"))
        proc = subprocess.run([sys.executable, "-m", "durable", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1


def test_without_its_server_durable_ui_says_how_to_install_it(data_dir: str) -> None:
    durable.Client(data_dir)
    script = ("import sys; sys.modules['hypercorn'] = None\n"  # as if it were not installed
              "from durable.cli import main\n"
              f"main(['--data', {data_dir!r}, 'ui'], prog_name='durable')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 1
    assert proc.stderr == ("error: durable ui needs the web server hypercorn: "
                           "pip install 'durable-workflows[ui]'\n")


def test_the_worker_and_the_other_commands_do_not_load_the_ui() -> None:
    """The UI costs a worker nothing when unused: not even its imports."""
    script = ("import sys\nimport durable, durable.worker, durable.cli._main\n"
              "loaded = sorted(m for m in sys.modules if m.startswith(('durable.ui', 'hypercorn', 'httpx')))\n"
              "print(loaded)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_an_idle_ui_does_nothing_and_holds_no_wake_up_socket(data_dir: str) -> None:
    """Between requests the UI neither polls the store nor listens for wake-ups (which every
    committing worker would have to send it): its CPU time stays still, and the store's wake-up
    directory holds the worker's sockets only."""
    worker = start_worker_process(data_dir, "tests.ui.wfs")
    try:
        wake = Path(data_dir) / "wake"
        before = set(os.listdir(wake)) if wake.exists() else set()
        with ui_process(data_dir) as (url, proc):
            assert get(url)[0] == 200
            assert get(url + "api/list")[0] == 200
            used = _cpu_seconds(proc.pid)
            time.sleep(2.0)  # idle: nothing may happen in this time
            idle = _cpu_seconds(proc.pid) - used
            assert idle < 0.1, f"the idle UI used {idle:.3f} s of CPU in 2 s"
            after = set(os.listdir(wake)) if wake.exists() else set()
            assert not any(name.startswith(f"{proc.pid}-") for name in after), after - before
    finally:
        stop_worker_process(worker)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_the_readme_shows_the_command_with_its_real_options(data_dir: str) -> None:
    """The README's Web UI block: its install line names the extra pyproject defines, and its
    `durable ui` line runs as written (on a free port: the tests must not take the default)."""
    [block] = [b for b in re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.S | re.M) if "durable ui" in b]
    lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert "pip install 'durable-workflows[ui]'" in lines
    [command] = [line for line in lines if line.startswith("durable ui")]
    durable.Client(data_dir)
    args = command.split()[2:]
    args = [data_dir if prev == "--data" else a for prev, a in zip([""] + args, args)]
    with ui_process(data_dir, *args) as (url, _):
        assert get(url)[0] == 200


def test_a_port_in_use_is_a_one_line_error(data_dir: str) -> None:
    durable.Client(data_dir)
    with ui_process(data_dir) as (url, _):
        port = url.rsplit(":", 1)[1].strip("/")
        proc = subprocess.run([sys.executable, "-m", "durable", "--data", data_dir, "ui", "--port", port],
                              cwd=ROOT, capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert proc.returncode == 1
        assert proc.stderr == (f"error: cannot listen on 127.0.0.1:{port}: Address already in use "
                               "(choose another --port or --host)\n")
