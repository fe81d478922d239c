"""Faults of the PostgreSQL store: the server restarted mid-flight, connections killed, a worker
cut off from the database past its lease.

Each test runs a private PostgreSQL server of its own (`.ci/postgres`, on a free port), so that it
can restart it or kill its connections without touching the server the rest of the suite uses.
Real `durable worker` processes, real server processes; only the network cut goes through a small
TCP proxy of the test, between one worker and the server. Run with the suite on PostgreSQL
(``DURABLE_TEST_STORE``, see tests/conftest.py); deselected otherwise.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import durable
from tests.conftest import ROOT, start_worker_process, stop_worker_process
from tests.fault._util import assert_each_step_recorded_once, final_events_by_seq, history, wait_until
from tests.wfs import faults

pytestmark = pytest.mark.postgres_only

MODULE = "tests.wfs.faults"
SCRIPT = str(ROOT / ".ci" / "postgres")


class Server:
    """A private PostgreSQL server in `directory` (started by `.ci/postgres`)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = subprocess.run([SCRIPT, "start", str(directory)], check=True, capture_output=True,
                                  text=True, timeout=120).stdout.strip()
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _ctl(self, *args: str) -> None:
        bin_dir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        cmd = [str(bin_dir / "pg_ctl"), "-D", str(self.directory / "data"), *args]
        if os.getuid() == 0:
            cmd = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def crash_and_restart(self) -> None:
        """Stop the server at once, as a crash would (no checkpoint: recovery replays the WAL at
        the next start), then start it again on the same port."""
        self._ctl("-m", "immediate", "-w", "stop")
        self._ctl("-l", str(self.directory / "server.log"), "-w", "-t", "60", "start",
                  "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.directory}")

    def kill_connections(self) -> int:
        """Terminate every other session (`pg_terminate_backend`); return how many."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'").fetchall()
        return len(rows)

    def stop(self) -> None:
        subprocess.run([SCRIPT, "stop", str(self.directory)], capture_output=True, timeout=120)


@pytest.fixture
def server() -> Iterator[Server]:
    # not under tmp_path: the server's unprivileged user must reach its directory
    top = Path(tempfile.mkdtemp(prefix="durable-pg-"))
    top.chmod(0o755)
    srv = Server(top / "srv")
    try:
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(top, ignore_errors=True)


class Proxy:
    """A TCP proxy to the server that the test can cut (every connection reset, new ones refused)
    and restore: a network partition between one worker and the database."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.port = self._listen.getsockname()[1]
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.cut_off = False
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listen.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
        except OSError:
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Reset every connection through the proxy, and refuse new ones until `restore`."""
        self.cut_off = True
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self._stop = True
        self.cut()
        self._listen.close()


def _via(url: str, port: int, proxy_port: int) -> str:
    return url.replace(f":{port}/", f":{proxy_port}/", 1)


def test_server_crash_and_restart_mid_flight(server: Server) -> None:
    """The server stops as a crash would while workers run chains of steps; once it is back,
    every workflow finishes with the right result and each step recorded once."""
    client = durable.Client(server.url)
    workers = [start_worker_process(server.url, MODULE, lease=2.0) for _ in range(2)]
    try:
        handles = [client.start(faults.inc_chain, 0, 6, 0.05, id=f"chain-{i}") for i in range(8)]
        wait_until(lambda: sum(len(final_events_by_seq(history(client, h.id))) for h in handles) >= 8,
                   timeout=60, what="some steps to complete")
        server.crash_and_restart()
        results = [h.result(timeout=120) for h in handles]
    finally:
        codes = [stop_worker_process(w) for w in workers]
    assert results == [6] * 8
    assert codes == [0, 0]
    for h in handles:
        events = history(client, h.id)
        assert_each_step_recorded_once(events, h.id)
        assert [e["kind"] for e in events].count("ActivityCompleted") == 6


def test_connections_killed_mid_flight(server: Server) -> None:
    """Every session of the workers is terminated (pg_terminate_backend) again and again while
    they run; they reconnect, and every workflow finishes with each step recorded once."""
    client = durable.Client(server.url)
    workers = [start_worker_process(server.url, MODULE, lease=2.0) for _ in range(2)]
    killed = 0
    try:
        handles = [client.start(faults.inc_chain, 0, 5, 0.05, id=f"chain-{i}") for i in range(6)]
        for round_ in range(5):
            wait_until(lambda r=round_: sum(len(final_events_by_seq(history(client, h.id))) for h in handles) >= 4 * r,
                       timeout=60, what=f"steps to go on before kill round {round_}")
            killed += server.kill_connections()
        results = [h.result(timeout=120) for h in handles]
    finally:
        codes = [stop_worker_process(w) for w in workers]
    assert killed > 0
    assert results == [5] * 6
    assert codes == [0, 0], [w.log_lines[-15:] for w in workers]  # type: ignore[attr-defined]
    for h in handles:
        assert_each_step_recorded_once(history(client, h.id), h.id)


def test_worker_cut_off_past_its_lease_is_fenced(server: Server, tmp_path: Path) -> None:
    """A worker holding an activity's lease loses the database (its connections reset through a
    proxy) for longer than the lease: another worker runs the step again and completes it; when
    the first one's network comes back, the result of its attempt is refused (fencing)."""
    proxy = Proxy(server.port)
    client = durable.Client(server.url)
    cut_off = start_worker_process(_via(server.url, server.port, proxy.port), MODULE, lease=1.0)
    survivor = None
    markers = tmp_path / "markers"
    markers.mkdir()
    try:
        handle = client.start(faults.hold_workflow, str(markers), 4.0, id="held")
        wait_until(lambda: faults.markers(str(markers), "hold"), timeout=30, what="the first worker to take the step")
        proxy.cut()
        survivor = start_worker_process(server.url, MODULE, lease=1.0)
        result = handle.result(timeout=60)
        proxy.restore()
        log_lines: list[str] = cut_off.log_lines  # type: ignore[attr-defined]
        wait_until(lambda: any("refused: lease lost" in line for line in log_lines), timeout=60,
                   what="the cut-off worker's late result to be refused")
    finally:
        proxy.restore()
        if survivor is not None:
            assert stop_worker_process(survivor) == 0
        code = stop_worker_process(cut_off)
        proxy.close()
    assert code == 0
    runs = faults.markers(str(markers), "hold")
    assert [(attempt, pid) for attempt, pid, _ in runs] == [(1, cut_off.pid), (2, survivor.pid)]
    assert result["pid"] == survivor.pid and result["attempt"] == 2
    events = history(client, "held")
    assert_each_step_recorded_once(events, "held")
    [done] = final_events_by_seq(events)[1]
    assert done["kind"] == "ActivityCompleted" and done["attempt"] == 2


def test_kill_9_of_a_worker_on_postgres(server: Server, tmp_path: Path) -> None:
    """A worker killed while it holds a lease: its sessions die with it, the lease expires, the
    other worker finishes the step (nothing of the dead worker's session is left locked)."""
    client = durable.Client(server.url)
    victim = start_worker_process(server.url, MODULE, lease=1.0)
    survivor = None
    try:
        handle = client.start(faults.hold_workflow, str(tmp_path), 60.0, id="held")
        wait_until(lambda: faults.markers(str(tmp_path), "hold"), timeout=30, what="the victim to take the step")
        survivor = start_worker_process(server.url, MODULE, lease=1.0)
        os.kill(victim.pid, signal.SIGKILL)
        result = handle.result(timeout=60)
    finally:
        if victim.poll() is None:
            stop_worker_process(victim, signal.SIGKILL)
        else:
            stop_worker_process(victim)
        if survivor is not None:
            assert stop_worker_process(survivor) == 0
    assert result["attempt"] == 2 and result["pid"] == survivor.pid


def _process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("T": stopped)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_worker_frozen_mid_batch_holds_up_the_others_for_seconds_only(server: Server) -> None:
    """A worker frozen (SIGSTOP, as a paused VM or a host cut off would be) in the middle of a
    write batch holds the workers' lock (their batches run one at a time): the server ends its
    session after `IDLE_TXN_SECONDS`, so another worker goes on and finishes every workflow; the
    frozen one, resumed, finds its session gone, runs its batch again, and carries on."""
    from durable._pg import IDLE_TXN_SECONDS

    client = durable.Client(server.url)
    victim = start_worker_process(server.url, MODULE, lease=2.0,
                                  env={"DURABLE_CRASHPOINT": "batch-before-commit:15:stop"})
    survivor = start_worker_process(server.url, MODULE, lease=2.0)
    try:
        first = [client.start(faults.inc_chain, 0, 4, 0.0, id=f"first-{i}") for i in range(4)]
        wait_until(lambda: _process_state(victim.pid) == "T", timeout=60, what="the worker to freeze mid-batch")
        deadline = time.monotonic() + 60  # for all: a worker held up for good would pass 60 s
        later = [client.start(faults.inc_chain, 0, 4, 0.0, id=f"later-{i}") for i in range(4)]
        results = [h.result(timeout=max(0.1, deadline - time.monotonic())) for h in first + later]
        log = (server.directory / "server.log").read_text()
    finally:
        os.kill(victim.pid, signal.SIGCONT)
        codes = [stop_worker_process(victim), stop_worker_process(survivor)]
    assert results == [4] * 8
    assert "idle-in-transaction timeout" in log, f"the server did not end the frozen session ({IDLE_TXN_SECONDS} s)"
    assert codes == [0, 0], [w.log_lines[-15:] for w in (victim, survivor)]  # type: ignore[attr-defined]
    for h in first + later:
        assert_each_step_recorded_once(history(client, h.id), h.id)
