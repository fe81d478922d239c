"""Store faults with a real worker process (issue 4, point 5).

A disk that is truly full: the store lives on a small tmpfs (mounted by the test; skipped when
mounting is not allowed), a filler file takes the rest of its space, and workflows with big
payloads are started while a worker process serves them. Writes then fail with ENOSPC:

- the client gets a clear `StoreFullError` ("... is full: nothing ... was written");
- the worker logs a clear error and keeps running (it is not killed, it does not exit);
- once the filler is removed (space returns), the same worker finishes every workflow that was
  started, with the right result, each step recorded once;
- reopening the store in a new process shows no partial history: every history is well formed
  (contiguous indexes, each step scheduled once with one final event), and the status index
  behind `list` agrees with the statuses folded from the histories.

The same without root, under a file size limit (RLIMIT_FSIZE) that is lifted on the running
worker; and the map filling up again and again while a worker runs.

Map growth (the LMDB map filling up, grown and the batch retried whole) is tested in
tests/worker/test_store_commit.py; a store written by a newer format is refused in
tests/worker/test_store_commit.py and tests/durable/test_store_security.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from tests.conftest import ROOT, lmdb_only, start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, status_from_history, wait_until
from tests.wfs import store_faults as wfs

MODULE = "tests.wfs.store_faults"
BLOB = 150_000


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[str]:
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: str, leave: int) -> str:
    """Fill the filesystem at `path` with one file, then free `leave` bytes; return its name."""
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    # unbuffered: a buffered file keeps what a short write left and fails again when closed
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    os.truncate(filler, max(0, os.path.getsize(filler) - leave))
    return filler


CHECK = r"""
import json, sys
import durable
from tests.fault._util import assert_each_step_recorded_once, status_from_history
client = durable.Client(sys.argv[1], create=False)
out = {}
for status in ("running", "completed", "failed", "cancelled", "terminated"):
    for d in client.list(status=status, limit=10_000):
        events = client.get_handle(d.workflow_id).history()
        assert_each_step_recorded_once(events, d.workflow_id)
        assert status_from_history(events) == status, (d.workflow_id, status)
        out[d.workflow_id] = [status, client.get_handle(d.workflow_id).result(timeout=1) if status == "completed" else None]
assert len(out) == len(client.list(limit=10_000))
print(json.dumps(out))
"""


def test_full_disk_gives_a_clear_error_and_the_worker_serves_on_once_space_returns(tmp_path: Path) -> None:
    with small_disk(tmp_path / "fs", "24m") as fs:
        data_dir = os.path.join(fs, "store")
        client = durable.Client(data_dir)
        worker = start_worker_process(data_dir, MODULE, lease=1.0)
        try:
            blob = "x" * BLOB
            client.start(wfs.blob_steps, blob, 0, id="before")
            assert client.get_handle("before").result(timeout=30) == [0, BLOB, BLOB // 2]
            filler = fill(fs, 2 << 20)  # room for a few workflows, not for their work
            started, errors = [], []
            for i in range(1, 200):
                try:
                    client.start(wfs.blob_steps, blob, i, id=f"wf-{i}")
                    started.append(i)
                except durable.StoreFullError as exc:
                    errors.append(str(exc))
                    if len(errors) >= 3:
                        break
            assert errors, "the disk never filled up"
            assert all("is full" in e and "nothing" in e for e in errors), errors
            # the worker hits the full disk too (claims, results): it logs it and keeps running
            wait_until(lambda: any("is full" in line for line in worker.log_lines), timeout=30,  # type: ignore[attr-defined]
                       what="the worker to log the full disk")
            assert worker.poll() is None, "the worker died on a full disk"
            os.remove(filler)  # space returns
            client.start(wfs.blob_steps, blob, 1000, id="after")
            for i in [*started, 1000]:
                wid = f"wf-{i}" if i != 1000 else "after"
                assert client.get_handle(wid).result(timeout=60) == [i, BLOB, BLOB // 2]
            assert worker.poll() is None
        finally:
            code = stop_worker_process(worker)
        assert code == 0, worker.log_lines  # type: ignore[attr-defined]
        full_lines = [line.strip() for line in worker.log_lines if "is full" in line]  # type: ignore[attr-defined]
        assert full_lines and all("Traceback" not in line for line in full_lines)
        client._store.close()
        # reopened by a new process: no partial history, index and histories agree
        out = subprocess.run([sys.executable, "-c", CHECK, data_dir], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        seen = json.loads(out.stdout)
        expected = {"before": ["completed", [0, BLOB, BLOB // 2]], "after": ["completed", [1000, BLOB, BLOB // 2]]}
        expected.update({f"wf-{i}": ["completed", [i, BLOB, BLOB // 2]] for i in started})
        assert seen == expected
        print(f"full disk: {len(started)} workflows started before the disk was full, {len(errors)} refused "
              f"with StoreFullError; worker log lines about it: {len(full_lines)}; e.g. {full_lines[0]!r}")


@lmdb_only  # the LMDB map and files
def test_map_fills_up_while_a_worker_runs_grows_and_loses_nothing(data_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LMDB map (1 MiB here) fills up again and again while a worker commits claims, results
    and workflow tasks in group-commit batches: each full batch is grown and retried whole, and
    every workflow completes with its right result and a well-formed history."""
    from durable import _store
    from tests.conftest import worker_thread

    monkeypatch.setattr(_store, "INITIAL_MAP_BYTES", 1 << 20)
    client = durable.Client(data_dir)
    assert client._store.env.info()["map_size"] == 1 << 20
    blob = "y" * BLOB
    with worker_thread(data_dir, [wfs.blob_steps], [wfs.measure], lease=2.0):
        for i in range(24):
            client.start(wfs.blob_steps, blob, i, id=f"m-{i}")
        for i in range(24):
            assert client.get_handle(f"m-{i}").result(timeout=60) == [i, BLOB, BLOB // 2]
    assert client._store.env.info()["map_size"] >= 8 << 20  # grown at least three times
    for d in client.list(limit=100):
        events = client.get_handle(d.workflow_id).history()
        assert_each_step_recorded_once(events, d.workflow_id)
        assert status_from_history(events) == d.status == "completed"


@lmdb_only  # the LMDB map and files
def test_file_size_limit_gives_a_clear_error_and_the_worker_serves_on_once_lifted(data_dir: str) -> None:
    """The same without root: the worker process runs under a file size limit (RLIMIT_FSIZE, with
    SIGXFSZ ignored so that writes fail instead of killing it) that its store passes. Its writes
    fail with a clear logged error, it keeps running, and once the limit is lifted (prlimit on the
    running process) it finishes every workflow; the reopened store has no partial history."""
    import resource
    import signal
    import threading

    client = durable.Client(data_dir)
    client._store.write(lambda t: None)
    limit = os.path.getsize(os.path.join(data_dir, "data.mdb")) + (1 << 20)

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    cmd = [sys.executable, "-m", "durable", "--data", data_dir, "worker", MODULE, "--lease", "1.0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, preexec_fn=limited)
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        blob = "z" * BLOB
        for i in range(20):  # the client (no limit) grows the file past the worker's limit
            client.start(wfs.blob_steps, blob, i, id=f"f-{i}")
        wait_until(lambda: any("RLIMIT_FSIZE" in line for line in lines), timeout=30,
                   what="the worker to log its file size limit")
        assert proc.poll() is None, "".join(lines[-5:])
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        for i in range(20):
            assert client.get_handle(f"f-{i}").result(timeout=60) == [i, BLOB, BLOB // 2]
        assert proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        reader.join(10)
        proc.stderr.close()
    assert code == 0, "".join(lines[-10:])
    limit_lines = [line.strip() for line in lines if "RLIMIT_FSIZE" in line]
    assert limit_lines and not any("Traceback" in line for line in lines)
    client._store.close()
    out = subprocess.run([sys.executable, "-c", CHECK, data_dir], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {f"f-{i}": ["completed", [i, BLOB, BLOB // 2]] for i in range(20)}
    print(f"file size limit: {len(limit_lines)} logged errors, e.g. {limit_lines[0]!r}")
