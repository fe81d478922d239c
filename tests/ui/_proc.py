"""`durable ui` as a real process: started on a free port, its URL read from what it prints."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import ROOT


@contextmanager
def ui_process(data: str, *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run ``durable ui --port 0`` on `data`; yield the URL it printed and the process; stop it
    with SIGTERM (it must exit 0)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DURABLE_UI_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "durable", "--data", data, "ui", "--port", "0", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    url = None
    while url is None:
        line = proc.stderr.readline()
        if not line:
            proc.wait(10)
            raise AssertionError(f"durable ui exited with {proc.returncode}: {''.join(lines)}")
        lines.append(line)
        match = re.search(r" at (http://\S+) \(Ctrl-C stops\)", line)
        url = match.group(1) if match else None
        assert time.monotonic() < deadline, f"durable ui did not start: {''.join(lines)}"
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(10)
        proc.stderr.close()
        assert code == 0, f"durable ui exited with {code}: {''.join(lines)}"
        assert "Traceback" not in "".join(lines), "".join(lines)
