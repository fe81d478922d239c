"""Wake-ups between processes that share an LMDB data directory, without busy polling (the
PostgreSQL store has its own, LISTEN/NOTIFY: `_pg`; both are given by `store.listener()`).

Each waiting process binds a Unix datagram socket in ``<data>/wake/``. After a commit that others
may be waiting for, the committing process sends one byte to every socket there. A wake-up only
says "look at the store again"; losing one costs at most the polling fallback, never correctness.
"""

from __future__ import annotations

import os
import select
import socket
import uuid

#: What a wake-up says (its one byte): look again; or also at the attempts you are running (one
#: was asked to cancel, or lost its lease or its workflow).
ANY, RUNNING_ACTIVITIES = b"!", b"a"


class Notifier:
    """Sends wake-ups to every listener of a data directory."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._mtime = -1
        self._targets: list[str] = []
        self.own: set[str] = set()

    def close(self) -> None:
        """Close the sending socket."""
        self._sock.close()

    def _refresh(self) -> None:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except FileNotFoundError:
            self._targets = []
            return
        if mtime != self._mtime:
            self._mtime = mtime
            self._targets = [os.path.join(self.directory, n) for n in os.listdir(self.directory)]

    def notify(self, what: bytes = ANY, skip: str | None = None) -> None:
        """Wake every listener (including this process's own, which wait on other tasks' work)
        but `skip` (the path of a listener whose owner learns of it otherwise)."""
        self._refresh()
        for target in self._targets:
            if target == skip:
                continue
            try:
                self._sock.sendto(what, target)
            except (BlockingIOError, InterruptedError):
                pass  # its buffer is full: it already has a wake-up pending
            except (ConnectionRefusedError, FileNotFoundError):
                if target not in self.own:  # a listener whose process died
                    try:
                        os.unlink(target)
                    except OSError:
                        pass
            except OSError:
                pass

    def wake_one(self, target: str) -> None:
        """Wake one listener (by its socket's path)."""
        self._sock.sendto(ANY, target)


class SocketWaits:
    """Waiting on a socket that receives wake-ups (each a few bytes): what every listener of
    every store does with the socket it reads (`sock`)."""

    sock: socket.socket

    def drain(self) -> bytes:
        """Consume pending wake-ups; return what they said (their bytes)."""
        said = b""
        try:
            while True:
                said += self.sock.recv(64)
        except (BlockingIOError, InterruptedError):
            pass
        return said

    def wait(self, timeout: float) -> None:
        """Block (a plain thread) until a wake-up arrives or `timeout` seconds pass."""
        if self.readable(timeout):
            self.drain()

    def readable(self, timeout: float) -> bool:
        """Whether a wake-up is waiting, after blocking up to `timeout` seconds for one. (poll,
        not select: select fails on descriptors past 1023, which a busy process reaches.)"""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(max(0.0, timeout) * 1000))


class Listener(SocketWaits):
    """A socket that receives wake-ups. Close it when done (it removes its file)."""

    def __init__(self, directory: str, notifier: Notifier | None = None) -> None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex[:12]}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self._notifier = notifier
        if notifier is not None:
            notifier.own.add(self.path)

    def poke(self) -> None:
        """Wake this listener (from another thread of this process)."""
        self.sock.sendto(ANY, self.path)

    def close(self) -> None:
        """Stop listening and remove the socket file."""
        if self._notifier is not None:
            self._notifier.own.discard(self.path)
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
