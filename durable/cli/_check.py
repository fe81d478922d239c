"""`durable check`'s processes: each imports the modules under check itself and replays the
histories it is handed; only workflow ids, run ids, types and raw history bytes reach it, and
only a row of plain values per workflow comes back.

Processes are spawned, not forked: a fork would copy the parent's open LMDB environment and its
threads, and the modules would not be imported afresh, as the workers that will run them are.
"""

from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from durable._check import CheckResult, check_one
from durable._codec import PayloadCodec
from durable._defs import Registry

#: A check process's registry, codec and text for "not registered in ..." (or why it has none).
_loaded: dict[str, Any] = {}

Item = tuple[str, str, str, bytes]
Row = tuple[str, "str | None", str, bool, "str | None", int]


def _load(module_names: Sequence[str], codec_spec: str | None, code: str) -> None:
    """A check process's initializer: import the modules, make the registry, load the codec."""
    _loaded["code"] = code
    try:
        modules = [importlib.import_module(name) for name in module_names]
        _loaded["registry"] = Registry.from_modules(modules)
        codec = None
        if codec_spec:
            from ._main import _load_codec  # the same loading as the parent's, in this process

            codec = _load_codec(codec_spec)
        _loaded["codec"] = codec
    except BaseException as exc:  # noqa: BLE001 - a failing initializer would be restarted forever
        _loaded["error"] = f"the code could not be loaded in a check process: {type(exc).__name__}: {exc}"


def _check(item: Item) -> Row:
    wid, run_id, wtype, raw = item
    if "error" in _loaded:
        return wid, run_id, wtype, False, _loaded["error"], 0
    r = check_one(_loaded["registry"], wid, run_id, wtype, raw, codec=_loaded["codec"], code=_loaded["code"])
    return r.workflow_id, r.run_id, r.workflow_type, r.ok, r.error, r.events


def run_checks(items: Iterable[Item], count: int, *, registry: Registry, codec: PayloadCodec | None,
               module_names: Sequence[str], codec_spec: str | None, jobs: int, code: str) -> Iterator[CheckResult]:
    """Check `count` histories, in their order: in this process with one job (or one history),
    else in a pool of `jobs` spawned processes (at most one per history)."""
    if jobs <= 1 or count <= 1:
        for wid, run_id, wtype, raw in items:
            yield check_one(registry, wid, run_id, wtype, raw, codec=codec, code=code)
        return
    processes = min(jobs, count)
    chunk = max(1, min(16, count // (processes * 4)))
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_load, initargs=(list(module_names), codec_spec, code)) as pool:
        for row in pool.imap(_check, items, chunksize=chunk):
            yield CheckResult(*row)
        pool.close()  # let every process end on its own (leaving the block would kill them)
        pool.join()
