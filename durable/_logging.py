"""`durable.logger`: logging from workflow and activity code, with their context on every record.

Inside workflow code a record goes to the ``durable.workflow`` logger with the workflow's id,
run, type and queue; inside an activity to ``durable.activity`` with the activity's name, attempt
and workflow; elsewhere to ``durable``. The context is appended to the message and set on the
record as attributes (`workflow_id`, `run_id`, `workflow_type`, `activity`, `attempt`), for
formatters such as the worker's ``--log-format json``. While workflow code replays events already
recorded, nothing is logged: a restart does not repeat the log lines of what already happened.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from . import _activity, _context

_CONTEXT_FIELDS = ("workflow_id", "run_id", "workflow_type", "activity", "attempt")


def _current_context() -> tuple[str, dict[str, Any]] | None:
    """(The logger name, the context) of the code running here; None while replaying."""
    rt = _context.current_or_none()
    if rt is not None:
        if rt.replaying:
            return None
        info = rt.info()
        return "durable.workflow", {"workflow_id": info.workflow_id, "run_id": info.run_id,
                                    "workflow_type": info.workflow_type}
    ctx = _activity._current.get()
    if ctx is not None:
        a = ctx.info
        return "durable.activity", {"workflow_id": a.workflow_id, "workflow_type": a.workflow_type,
                                    "activity": a.activity, "attempt": a.attempt}
    return "durable", {}


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """The type of `durable.logger`: a `logging.LoggerAdapter` that finds its context itself."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("durable"), {})

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        where = _current_context()
        if where is None:
            return  # replaying: this was logged when the events were first made
        name, context = where
        logger = logging.getLogger(name)
        if not logger.isEnabledFor(level):
            return
        msg, options = self.process(msg, kwargs, context)
        options.setdefault("stacklevel", 2)
        logger.log(level, msg, *args, **options)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any],
                context: Mapping[str, Any] | None = None) -> tuple[Any, MutableMapping[str, Any]]:
        """Append the context to the message and put it on the record (`extra`)."""
        if not context:
            return msg, kwargs
        kwargs["extra"] = {**context, **dict(kwargs.get("extra") or {})}
        text = ", ".join(f"{k}={context[k]!r}" if isinstance(context[k], str) else f"{k}={context[k]}"
                         for k in _CONTEXT_FIELDS if k in context)
        return f"{msg} ({text})", kwargs

    def isEnabledFor(self, level: int) -> bool:
        where = _current_context()
        return where is not None and logging.getLogger(where[0]).isEnabledFor(level)


logger = ContextLogger()
logger.__doc__ = """Log from workflow and activity code: ``durable.logger.info("charged %s", order)``.

Each record carries the workflow's (or the activity's) context; nothing is logged while workflow
code replays events already recorded."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the durable context fields, and
    the exception if any (the worker's ``--log-format json``)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for field in _CONTEXT_FIELDS:
            if hasattr(record, field):
                out[field] = getattr(record, field)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)

    converter = staticmethod(time.gmtime)  # times in UTC, as the "Z" says
