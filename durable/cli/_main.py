"""The `durable` command: a thin layer over the public API.

It parses, calls the library, prints. A `DurableError` becomes one line on stderr and exit code 1;
a usage error exits with 2 (click); no traceback unless ``--debug``. Inputs and outputs on the
command line are JSON.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib
import gc
import io
import json
import logging
import os
import sys
import sysconfig
import traceback
import types
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

import durable
import durable._backend
from durable._codec import format_error_record
from durable._logging import JsonFormatter

F = TypeVar("F", bound=Callable[..., Any])

# The client logs a start on a queue no worker serves; the CLI says it itself, on one line.
logging.getLogger("durable.client").addHandler(logging.NullHandler())


class _State:
    def __init__(self, data: str | None, debug: bool, codec: str | None = None, store: str | None = None,
                 data_from_env: bool = False) -> None:
        self.data = data
        self.store = store
        self.data_from_env = data_from_env  # --data's value came from $DURABLE_DATA
        self.debug = debug
        self.codec_spec = codec
        self._codec: list[durable.PayloadCodec | None] = []

    @property
    def codec(self) -> durable.PayloadCodec | None:
        """The payload codec named by --codec (loaded on first use), or None."""
        if not self._codec:
            self._codec.append(_load_codec(self.codec_spec) if self.codec_spec else None)
        return self._codec[0]

    def target(self) -> str:
        """The store named on the command line: --store or --data (not both), else the
        environment's (`durable._client.default_data_dir`)."""
        if self.store is not None:
            if self.data is not None and not self.data_from_env:
                raise click.UsageError("give the store with --data DIR or --store URL, not both")
            return self.store
        if self.data is not None and not self.data_from_env:
            return self.data
        return durable._client.default_data_dir()

    def client(self, create: bool = False) -> durable.Client:
        return durable.Client(self.target(), create=create, codec=self.codec)


def _load_codec(spec: str) -> durable.PayloadCodec:
    """The codec named MODULE:NAME on the command line: an object with encode and decode, or a
    class (or factory) called without arguments to make one."""
    module_name, _, name = spec.partition(":")
    if not name or not module_name:
        _fail(f"--codec must be MODULE:NAME (e.g. myapp.crypto:Codec), not {spec!r}")
    [module] = _import_modules((module_name,))
    obj = getattr(module, name, None)
    if obj is None:
        _fail(f"--codec: module {module_name!r} has no attribute {name!r}")
    if isinstance(obj, type) or (callable(obj) and not callable(getattr(obj, "encode", None))):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - the operator's code
            _fail(f"--codec: {spec} could not be created: {type(exc).__name__}: {exc}")
    if not (callable(getattr(obj, "encode", None)) and callable(getattr(obj, "decode", None))):
        _fail(f"--codec: {spec} has no encode and decode methods")
    return obj  # type: ignore[no-any-return]


def _fail(message: str, *, several_lines: bool = False) -> None:
    if several_lines:  # a failed workflow's error tree
        message = "\n".join(_one_line(line) for line in message.split("\n"))
    else:
        message = _one_line(message)
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _one_line(text: str) -> str:
    """`text` with every unprintable character escaped: line breaks, terminal controls, bidi
    overrides and lone surrogates (from undecodable bytes in argv) cannot split or garble it."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ord(ch)) for ch in text)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    """Click's own errors quote what was typed: keep each on one line too."""
    try:
        yield
    except click.ClickException as exc:
        exc.message = _one_line(exc.message)
        raise


class _Group(click.Group):
    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # every subcommand takes the store options after its name as well (see _shared_options)
        cmd.params.extend(_shared_options())
        super().add_command(cmd, name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


def handle_errors(fn: F) -> F:
    """Turn errors into one line on stderr and exit code 1 (tracebacks only with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state = click.get_current_context().find_object(_State)
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except durable.DurableError as exc:
            if state is not None and state.debug:
                raise
            _fail(str(exc), several_lines=isinstance(exc, durable.WorkflowFailed))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            _reader_gone()
        except Exception as exc:  # noqa: BLE001 - never a traceback without --debug
            if state is not None and state.debug:
                raise
            _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")

    return wrapper  # type: ignore[return-value]


def _reader_gone() -> None:
    """The reader of our output went away (`durable list | head -1`): end at once and quietly,
    as Python's documentation recommends: what is still buffered for stdout goes to /dev/null
    instead of raising again, with a traceback, when the interpreter flushes it at exit."""
    with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):  # no file under a test runner
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    sys.exit(1)


def _import_modules(names: tuple[str, ...]) -> list[Any]:
    """Import the modules named on the command line (from the current directory too). A path to
    a file under the current directory names the module there (app/orders.py: app.orders).

    A module that fails to import is one line naming the error and where in the operator's code
    it happened, or with --debug its traceback (from the module's code on)."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    ctx = click.get_current_context(silent=True)
    state = ctx.find_object(_State) if ctx is not None else None
    loaded = []
    for arg in names:
        name = _module_name(arg, cwd)
        try:
            loaded.append(importlib.import_module(name))
        except Exception as exc:  # noqa: BLE001 - ImportError, or any error raised by the module's code
            if _not_found(exc, name):
                assert isinstance(exc, ModuleNotFoundError)
                _fail(f"cannot import module {name!r}: no module named {exc.name!r} in the current directory ({cwd}) "
                      "or on PYTHONPATH: run durable from the directory that holds it, or add that directory to PYTHONPATH")
            frames = _user_frames(exc.__traceback__)
            if state is not None and state.debug:  # the traceback from the module's code on
                traceback.print_exception(type(exc), exc, frames[0] if frames else None)
                sys.exit(1)
            where = _where(exc, frames, cwd)
            text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            _fail(f"cannot import module {name!r}: {type(exc).__name__}: {text}{where}; run with --debug for the traceback")
    return loaded


def _module_name(arg: str, cwd: str) -> str:
    """The dotted name of the module `arg` names: itself, or for a path to a .py file under `cwd`,
    the name it has there; a clear error for anything else."""
    if not arg or not arg.isprintable():
        _fail(f"cannot import module {arg!r}: give the absolute dotted name of a module (e.g. examples.hello)")
    is_path = "/" in arg or os.sep in arg or (arg.endswith(".py") and os.path.isfile(arg))
    if not is_path:
        if arg.startswith("."):
            _fail(f"cannot import module {arg!r}: give the absolute dotted name of a module (e.g. examples.hello)")
        return arg
    if os.path.isdir(arg):
        _fail(f"cannot import {arg!r}: a directory; name a module (e.g. app.orders) or a .py file")
    if not arg.endswith(".py"):
        _fail(f"cannot import {arg!r}: name a module (e.g. app.orders) or a .py file (e.g. app/orders.py)")
    if not os.path.isfile(arg):
        _fail(f"cannot import {arg!r}: no such file")
    for path, base in ((os.path.abspath(arg), cwd), (os.path.realpath(arg), os.path.realpath(cwd))):
        rel = os.path.relpath(path, base)
        if not (rel == os.pardir or rel.startswith(os.pardir + os.sep)):
            break
    else:
        root, dotted = _package_root(os.path.abspath(arg))
        _fail(f"cannot import {arg!r}: it is outside the current directory; use {dotted} (a module name), "
              f"not {arg}, from {root} (or with {root} on PYTHONPATH)")
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    for part in parts:
        if not part.isidentifier():
            _fail(f"cannot import {arg!r}: {part!r} is not a valid module name")
    return ".".join(parts)


def _package_root(path: str) -> tuple[str, str]:
    """The directory a .py file is imported from, and its dotted name there (up through the
    directories that hold an __init__.py)."""
    parts = [os.path.basename(path)[:-3]]
    root = os.path.dirname(path)
    if parts[0] == "__init__":
        parts = [os.path.basename(root)]
        root = os.path.dirname(root)
    while os.path.isfile(os.path.join(root, "__init__.py")):
        parts.insert(0, os.path.basename(root))
        root = os.path.dirname(root)
    return root, ".".join(parts)


def _not_found(exc: Exception, name: str) -> bool:
    """Whether `exc` says the module `name` itself (or a package it is in) does not exist, as
    opposed to an import inside its code that failed."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return missing is not None and (name == missing or name.startswith(missing + "."))


#: Where our own code and Python's are: the frames of a failed import that are not the operator's.
_NOT_USER_DIRS = tuple(
    os.path.join(os.path.dirname(os.path.abspath(sys.modules[m].__file__ or "")), "")
    for m in ("durable", "durable.cli", "durable.worker")
) + tuple(os.path.join(os.path.abspath(sysconfig.get_path(k)), "") for k in ("stdlib", "platstdlib", "purelib", "platlib"))


def _user_frames(tb: types.TracebackType | None) -> list[types.TracebackType]:
    """The traceback entries of the operator's code, outermost first (not the import machinery,
    the standard library, installed packages or durable's own)."""
    frames = []
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith("<") and not os.path.abspath(filename).startswith(_NOT_USER_DIRS):
            frames.append(tb)
        tb = tb.tb_next
    return frames


def _where(exc: Exception, frames: list[types.TracebackType], cwd: str) -> str:
    """Where the operator's code failed, as " (app/orders.py, line 12)": its innermost frame, or
    the place of a syntax error, relative to `cwd` if it is under it; "" if unknown."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        filename, line = exc.filename, exc.lineno
    elif frames:
        filename, line = frames[-1].tb_frame.f_code.co_filename, frames[-1].tb_lineno
    else:
        return ""
    rel = os.path.relpath(os.path.abspath(filename), cwd)
    shown = filename if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel
    return f" ({shown}, line {line})"


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text[:60]!r}") from None
    except (ValueError, RecursionError) as exc:  # an integer of over 4300 digits; nesting too deep
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(";")[0]
        raise click.UsageError(f"{what} is not valid JSON ({reason}): {text[:60]!r}") from None


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def _data_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # An empty path would silently mean the current directory to the library.
    if value == "":
        raise click.BadParameter("must name a directory, not be empty")
    return value


def _store_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value == "":
        raise click.BadParameter("must name a store (a directory or a URL), not be empty")
    return value


_DATA_HELP = ("Store directory (a store URL is taken too, as with --store; default: $DURABLE_STORE, "
              "else $DURABLE_DATA, else ./.durable).")
_STORE_HELP = ("The store, by URL (postgresql://user@host/db, lmdb:///abs/dir) or directory, instead of "
               "--data (default: $DURABLE_STORE).")
_CODEC_HELP = ("Payload codec (e.g. encryption) applied to every payload: an object with encode "
               "and decode, or a class to instantiate (default: $DURABLE_CODEC).")
_DEBUG_HELP = "Show tracebacks for errors."


def _set_state(attr: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback that puts a shared option given after the subcommand into the group's state."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if attr == "data":
            value = _data_dir(ctx, param, value)
        elif attr == "store":
            value = _store_url(ctx, param, value)
        if value is None or value is False:
            return  # not given here: the group's value (or its environment variable) stands
        state = ctx.find_object(_State)
        if state is not None:
            setattr(state, attr, value)
            if attr == "data":
                state.data_from_env = False

    return callback


def _shared_options() -> list[click.Option]:
    """--data, --codec and --debug for a subcommand, so that they are accepted after it too.

    Given in both places, the one after the subcommand wins. The environment variables are
    read by the group's options, so they apply whichever place the user writes options in.
    """
    return [
        click.Option(["--data"], default=None, metavar="DIR", expose_value=False,
                     callback=_set_state("data"), help=_DATA_HELP),
        click.Option(["--store"], default=None, metavar="URL", expose_value=False,
                     callback=_set_state("store"), help=_STORE_HELP),
        click.Option(["--codec", "codec_spec"], default=None, metavar="MODULE:NAME", expose_value=False,
                     callback=_set_state("codec_spec"), help=_CODEC_HELP),
        click.Option(["--debug"], is_flag=True, default=False, expose_value=False,
                     callback=_set_state("debug"), help=_DEBUG_HELP),
    ]


@click.group(cls=_Group)
@click.option("--data", envvar="DURABLE_DATA", default=None, metavar="DIR", callback=_data_dir,
              help=_DATA_HELP)
@click.option("--store", default=None, metavar="URL", callback=_store_url, help=_STORE_HELP)
@click.option("--debug", is_flag=True, help=_DEBUG_HELP)
@click.option("--codec", envvar="DURABLE_CODEC", default=None, metavar="MODULE:NAME", help=_CODEC_HELP)
@click.version_option(package_name="durable-workflows")
@click.pass_context
def main(ctx: click.Context, data: str | None, store: str | None, debug: bool, codec: str | None) -> None:
    """Durable workflows on an embedded store (or PostgreSQL): run workers, start and manage workflows.

    --data, --store, --codec and --debug may be given before or after the command
    (durable --data DIR list, or durable list --data DIR).
    """
    from_env = ctx.get_parameter_source("data") == click.core.ParameterSource.ENVIRONMENT
    ctx.obj = _State(data, debug, codec, store=store, data_from_env=from_env)


@main.command()
@click.argument("modules", nargs=-1, required=True)
@click.option("--queue", default="default", show_default=True, help="Task queue to serve.")
@click.option("--concurrency", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="Most activities run at once.")
@click.option("--lease", default=10.0, show_default=True, type=click.FloatRange(0.05, 3600),
              help="Lease on claimed tasks, in seconds.")
@click.option("--cache", default=10_000, show_default=True, type=click.IntRange(1, 10_000_000),
              help="Most live workflows kept in memory.")
@click.option("--graceful-timeout", default=10.0, show_default=True, type=click.FloatRange(0, 86_400),
              metavar="SECONDS", help="On Ctrl-C or SIGTERM, wait this long for running work, then hand it back.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: one JSON object per log record, with the workflow and activity context.")
@click.option("--log-workflows/--no-log-workflows", default=True, show_default=True,
              help="An INFO line for each workflow this worker starts and closes (logger durable.worker.lifecycle).")
@click.option("--activity-loop", type=click.Choice(["trio", "asyncio"]), default="trio", show_default=True,
              help="Where async activities declared without loop= run (asyncio: for asyncio libraries).")
@click.option("--metrics-port", default=None, type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (needs durable-workflows[metrics]).")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, metavar="HOST",
              help="Address the metrics are served on.")
@click.option("--tracing", is_flag=True,
              help="OpenTelemetry spans of workflow tasks and activity attempts (needs durable-workflows[tracing] "
                   "and an SDK configured, e.g. by opentelemetry-instrument).")
@click.pass_obj
@handle_errors
def worker(state: _State, modules: tuple[str, ...], queue: str, concurrency: int, lease: float, cache: int,
           graceful_timeout: float, log_format: str, log_workflows: bool, activity_loop: str,
           metrics_port: int | None, metrics_host: str, tracing: bool) -> None:
    """Run a worker for the workflows and activities defined in MODULES (e.g. examples.hello, or
    a file: examples/hello.py).

    The first Ctrl-C (or SIGTERM) stops claiming and waits for the running work, at most
    --graceful-timeout seconds; a second Ctrl-C stops at once (what ran is retried elsewhere once
    its lease expires)."""
    registry = durable._defs.Registry.from_modules(_import_modules(modules))
    if not registry.workflows and not registry.activities:
        _fail(f"no workflows or activities found in {', '.join(modules)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if not log_workflows:
        logging.getLogger("durable.worker.lifecycle").setLevel(logging.WARNING)
    if metrics_port is None and metrics_host != "127.0.0.1":
        _fail("--metrics-host needs --metrics-port")
    w = durable.Worker(
        state.target(),
        workflows=[d.target for d in registry.workflows.values()],
        activities=list(registry.activities.values()),
        queue=queue, max_concurrent_activities=concurrency, lease=lease, max_cached_workflows=cache,
        graceful_timeout=graceful_timeout, codec=state.codec, activity_loop=activity_loop,  # type: ignore[arg-type]
        metrics=None if metrics_port is None else durable.Metrics(metrics_port, metrics_host), tracing=tracing,
    )
    # What is alive now (modules, classes, the registry) lives as long as the process: keep it
    # out of the garbage collector's full passes, which then only walk the workflows' objects.
    gc.freeze()
    w.run_sync()
    click.echo("worker stopped", err=True)


@main.command()
@click.argument("workflow")
@click.option("--input", "-i", "inputs", multiple=True, metavar="JSON",
              help="One argument of the workflow, as JSON (repeat for several).")
@click.option("--id", "wid", default=None, help="Workflow id (default: a random UUID).")
@click.option("--queue", default="default", show_default=True)
@click.option("--id-reuse-policy", "reuse", default="allow_duplicate", show_default=True,
              type=click.Choice(durable._ops.ID_REUSE_POLICIES),
              help="If a workflow with this id has closed: start a new run; only if it did not complete; never.")
@click.option("--id-conflict-policy", "conflict", default="fail", show_default=True,
              type=click.Choice(durable._ops.ID_CONFLICT_POLICIES),
              help="If a workflow with this id is running: fail, or print its id as if started.")
@click.option("--start-delay", "start_delay", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="Record the workflow now, start its code this many seconds later.")
@click.option("--execution-timeout", "execution_timeout", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="Time the workflow out after this long, across continue-as-new.")
@click.option("--run-timeout", "run_timeout", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="Time a run of the workflow out after this long.")
@click.option("--timeout-grace", "timeout_grace", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="When a timeout passes, ask the workflow to cancel (its compensations run) and give it this long.")
@click.option("--wait", is_flag=True, help="Wait for the result and print it.")
@click.option("--timeout", default=None, type=click.FloatRange(0), help="With --wait: give up after this many seconds.")
@click.pass_obj
@handle_errors
def start(state: _State, workflow: str, inputs: tuple[str, ...], wid: str | None, queue: str, reuse: str,
          conflict: str, start_delay: float | None, execution_timeout: float | None, run_timeout: float | None,
          timeout_grace: float | None, wait: bool, timeout: float | None) -> None:
    """Start WORKFLOW (by name) and print its id (or, with --wait, its result as JSON)."""
    args = [_json_arg(text, f"--input {i + 1}") for i, text in enumerate(inputs)]
    handle = state.client(create=True).start(workflow, *args, id=wid, queue=queue, id_reuse_policy=reuse,
                                             id_conflict_policy=conflict, start_delay=start_delay,
                                             execution_timeout=execution_timeout, run_timeout=run_timeout,
                                             timeout_grace=timeout_grace)
    if handle.warning is not None:
        click.echo(f"warning: {_one_line(handle.warning)}", err=True)
    if wait:
        click.echo(_to_json(handle.result(timeout=timeout)))
    else:
        click.echo(handle.id)


@main.command()
@click.argument("workflow_id")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.pass_obj
@handle_errors
def signal(state: _State, workflow_id: str, name: str, args: tuple[str, ...]) -> None:
    """Send signal NAME with ARGS (each JSON) to a workflow."""
    values = [_json_arg(text, f"argument {i + 1}") for i, text in enumerate(args)]
    state.client().get_handle(workflow_id).signal(name, *values)
    click.echo(f"signalled {workflow_id}: {name}")


@main.command()
@click.argument("workflow_id")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0))
@click.pass_obj
@handle_errors
def query(state: _State, workflow_id: str, name: str, args: tuple[str, ...], timeout: float) -> None:
    """Run query NAME with ARGS (each JSON) on a worker and print the answer as JSON."""
    values = [_json_arg(text, f"argument {i + 1}") for i, text in enumerate(args)]
    click.echo(_to_json(state.client().get_handle(workflow_id).query(name, *values, timeout=timeout)))


@main.command()
@click.argument("workflow_id")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option("--update-id", default=None, metavar="ID",
              help="The update's id (default: a fresh one); run again with the same id to get the same outcome.")
@click.option("--timeout", default=None, type=click.FloatRange(0), help="Give up waiting after this many seconds.")
@click.pass_obj
@handle_errors
def update(state: _State, workflow_id: str, name: str, args: tuple[str, ...], update_id: str | None,
           timeout: float | None) -> None:
    """Send update NAME with ARGS (each JSON) to a workflow; wait for its handler and print what
    it returned as JSON. A validator's refusal, a failure of the handler or a closed workflow
    is an error (exit code 1)."""
    values = [_json_arg(text, f"argument {i + 1}") for i, text in enumerate(args)]
    handle = state.client().get_handle(workflow_id)
    click.echo(_to_json(handle.update(name, *values, update_id=update_id, timeout=timeout)))


@main.command()
@click.argument("workflow_id")
@click.option("--timeout", default=None, type=click.FloatRange(0), help="Give up after this many seconds.")
@click.pass_obj
@handle_errors
def result(state: _State, workflow_id: str, timeout: float | None) -> None:
    """Wait for a workflow to end and print its result as JSON."""
    click.echo(_to_json(state.client().get_handle(workflow_id).result(timeout=timeout)))


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Recorded in the history.")
@click.pass_obj
@handle_errors
def cancel(state: _State, workflow_id: str, reason: str) -> None:
    """Ask a workflow to cancel (it runs its compensations and ends as cancelled)."""
    state.client().get_handle(workflow_id).cancel(reason)
    click.echo(f"cancel requested: {workflow_id}")


@main.command()
@click.argument("workflow_id")
@click.option("--reason", default="", help="Recorded in the history.")
@click.pass_obj
@handle_errors
def terminate(state: _State, workflow_id: str, reason: str) -> None:
    """End a workflow at once; none of its code runs again."""
    state.client().get_handle(workflow_id).terminate(reason)
    click.echo(f"terminated: {workflow_id}")


class _Time(click.ParamType):
    """An ISO 8601 date or datetime; without an offset, UTC."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> _dt.datetime:
        if isinstance(value, _dt.datetime):
            return value
        try:
            when = _dt.datetime.fromisoformat(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an ISO 8601 date or datetime (e.g. 2026-12-03, 2026-12-03T05:21:00, "
                      "2026-12-03T06:21:00+01:00)", param, ctx)
        return when if when.tzinfo is not None else when.replace(tzinfo=_dt.timezone.utc)


def _filters(fn: F) -> F:
    """The options `list` and `count` share: which workflows."""
    for option in reversed([
        click.option("--status", type=click.Choice(durable._ops.STATUSES)),
        click.option("--workflow", "--type", "workflow", default=None, metavar="NAME", help="Only workflows of this type."),
        click.option("--since", type=_Time(), default=None,
                     help="Only those started at or after TIME: an ISO 8601 date or datetime "
                          "(2026-12-03, 2026-12-03T05:21:00+01:00); without an offset, UTC."),
        click.option("--until", type=_Time(), default=None, help="Only those started before TIME (as --since)."),
        click.option("--all-runs", is_flag=True, help="Every run of each id, not only its latest."),
    ]):
        fn = option(fn)
    return fn


@main.command("list")
@_filters
@click.option("--schedule", "schedule_id", default=None, metavar="ID", help="Only the workflows this schedule started.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1), help="Show at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
@handle_errors
def list_(state: _State, status: str | None, workflow: str | None, since: _dt.datetime | None,
          until: _dt.datetime | None, all_runs: bool, schedule_id: str | None, limit: int, as_json: bool) -> None:
    """List workflows, newest first by start time (the latest run of each id, unless --all-runs).

    A table with a header line, or with --json one object per line; if more workflows match
    than --limit, a line on stderr says so."""
    rows = state.client().list(status=status, workflow=workflow, since=since, until=until, all_runs=all_runs,
                               limit=limit + 1, schedule=schedule_id)
    more = len(rows) > limit
    rows = rows[:limit]
    if as_json:
        for row in rows:
            click.echo(_to_json(row.to_json()))
    else:
        _print_table(rows, all_runs)
    if more:
        click.echo(f"... more; showing the newest {limit}, use --limit", err=True)


def _print_table(rows: list[durable.WorkflowDescription], all_runs: bool) -> None:
    """Rows under a header, each column as wide as its widest cell among those printed."""
    header = ["ID", *(["RUN"] if all_runs else []), "TYPE", "STATUS", "STARTED", "QUEUE"]
    errors = any(row.task_error for row in rows)
    if errors:
        header.append("TASK_ERROR")
    table = [header]
    for row in rows:
        cells = [row.workflow_id, *([row.run_id] if all_runs else []), row.workflow_type, row.status,
                 row.created_at.isoformat(timespec="seconds"), row.queue]
        if errors:
            cells.append(row.task_error.splitlines()[0][:80] if row.task_error else "")
        table.append([_one_line(cell) for cell in cells])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())


@main.command()
@_filters
@click.pass_obj
@handle_errors
def count(state: _State, status: str | None, workflow: str | None, since: _dt.datetime | None,
          until: _dt.datetime | None, all_runs: bool) -> None:
    """Print how many workflows there are (the latest run of each id, unless --all-runs)."""
    click.echo(state.client().count(status=status, workflow=workflow, since=since, until=until, all_runs=all_runs))


@main.command()
@click.argument("workflow_id")
@click.option("--run", "run_id", default=None, metavar="RUN", help="This run of the id (default: its latest).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@handle_errors
def describe(state: _State, workflow_id: str, run_id: str | None, as_json: bool) -> None:
    """Show a workflow's status, type, times, queue and counters (and its error, if failed)."""
    handle = state.client().get_handle(workflow_id, run_id=run_id)
    desc = handle.describe()
    data = desc.to_json()
    if desc.status == "failed":
        last = handle.history()[-1]
        data["error"] = last.get("error")
    if as_json:
        click.echo(_to_json(data))
        return
    for key, value in data.items():
        if key == "error":
            click.echo("error:")
            click.echo(format_error_record(value, "  "))
        elif key in ("task_error", "closed_at", "queue_warning", "start_at", "schedule_id", "previous_run_id", "next_run_id",
                     "history_warning", "execution_deadline", "run_deadline", "parent_id", "parent_run_id",
                     "reset_run_id", "reset_from_run_id") and value is None or key == "reset_from_event":
            continue
        elif key in ("signals", "queries", "updates"):
            if value is not None:
                click.echo(f"{key}: {', '.join(value) or 'none'}")
        elif key == "pending_children":
            if value:
                click.echo(f"pending children: {', '.join(value)}")
        elif key == "pending_updates":
            if value:
                click.echo(f"updates in flight: {', '.join(value)}")
        elif key == "task_error":
            click.echo(f"task_error: {value}")
        elif key in ("queue_warning", "history_warning"):
            click.echo(f"warning: {value}")
        elif key in ("previous_run_id", "next_run_id"):
            verb = "continues run" if key == "previous_run_id" else "continued as new in run"
            click.echo(f"{verb}: {value} (durable describe {desc.workflow_id} --run {value})")
        elif key == "reset_run_id":
            click.echo(f"reset as run: {value} (durable describe {desc.workflow_id} --run {value})")
        elif key == "reset_from_run_id":
            click.echo(f"reset from run: {value}, event {desc.reset_from_event} "
                       f"(durable history {desc.workflow_id} --run {value})")
        elif key == "pending_activities":
            if value:
                click.echo("pending activities:")
                for pending in desc.pending_activities:
                    click.echo(f"  {_pending_line(pending)}")
        else:
            click.echo(f"{key}: {value}")


def _pending_line(p: durable.PendingActivity) -> str:
    """One activity of `describe`: what it is, where it is, and why it is not done yet."""
    parts = [f"seq {p.seq} {p.name}: {p.state.replace('_', ' ')}, attempt {p.attempt}"]
    if p.worker:
        parts.append(f"on {p.worker}")
    if p.next_attempt_at is not None:
        parts.append(f"next attempt at {p.next_attempt_at.isoformat(timespec='milliseconds')}")
    if p.last_heartbeat_at is not None:
        parts.append(f"last heartbeat {p.last_heartbeat_at.isoformat(timespec='milliseconds')}")
    if p.cancel_requested:
        parts.append("cancel requested")
    line = ", ".join(parts)
    if p.last_failure_type is not None:
        message = (p.last_failure_message or "").splitlines()[0][:200] if p.last_failure_message else ""
        line += f"; last failure: {p.last_failure_type}: {message}"
    return line


@main.command()
@click.argument("workflow_id")
@click.option("--run", "run_id", default=None, metavar="RUN", help="This run of the id (default: its latest).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are recorded, until the run closes.")
@click.option("--diff", "diff_id", default=None, metavar="OTHER_ID",
              help="Compare with workflow OTHER_ID's history: where they part (exit 1 if they differ).")
@click.option("--diff-run", "diff_run", default=None, metavar="RUN",
              help="Compare with this run (of OTHER_ID, or of WORKFLOW_ID without --diff).")
@click.pass_obj
@handle_errors
def history(state: _State, workflow_id: str, run_id: str | None, as_json: bool, follow: bool,
            diff_id: str | None, diff_run: str | None) -> None:
    """Print a workflow's history as a timeline: index, time of day (UTC), time since the start,
    kind, details (durations readable; --json gives them in nanoseconds).

    With --diff or --diff-run, print instead where it and another history part: the length of
    their common prefix and the first differing event of each (times, ids and seeds aside)."""
    if diff_id is not None or diff_run is not None:
        if follow:
            raise click.UsageError("--follow cannot be used with --diff")
        from ._reset import print_diff

        print_diff(state, workflow_id, run_id, diff_id or workflow_id, diff_run, as_json)
        return
    handle = state.client().get_handle(workflow_id, run_id=run_id)
    events = handle.follow_history() if follow else iter(handle.history())
    t0: _dt.datetime | None = None
    for event in events:
        if as_json:
            click.echo(_to_json(event))
        else:
            t0 = t0 or event["time"]
            click.echo(_event_line(event, t0))
            if "error" in event:
                click.echo(format_error_record(event["error"], "        "))
        if follow:
            sys.stdout.flush()


def _event_line(event: dict[str, Any], t0: _dt.datetime) -> str:
    """One event of `history`: index, UTC time of day, offset from the first event, kind, details."""
    skip = ("index", "kind", "time", "error", "opts", "seed", "workflow_time")
    parts = []
    for key, value in event.items():
        if key in skip:
            continue
        if key == "duration_ns" and isinstance(value, int):
            parts.append(f"duration={readable_duration(value / 1e9)}")
        elif key == "run" and isinstance(value, int):  # a child's or another workflow's run: as run ids read
            if value:
                parts.append(f"run={value:x}")
        else:
            parts.append(f"{key}={_to_json(value)}")
    opts = event.get("opts")
    if event["kind"] == "ChildWorkflowInitiated" and isinstance(opts, dict):
        parts += [f"queue={_to_json(opts['queue'])}"] if "queue" in opts else []
        parts.append(f"parent_close_policy={_to_json(opts.get('close', 'terminate'))}")
    clock = event["time"].strftime("%H:%M:%S.%f")[:-3]
    offset = "+" + readable_duration((event["time"] - t0).total_seconds())
    return f"{event['index']:>4}  {clock}  {offset:>11}  {event['kind']:<24} {' '.join(parts)}".rstrip()


def readable_duration(seconds: float) -> str:
    """A duration for people: "0 ms", "82.4 ms", "1.50 s", "2 min 05 s", "3 h 07 min", "2 d 04 h"."""
    if seconds < 1:
        ms = seconds * 1000
        return "0 ms" if ms == 0 else f"{ms:.1f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


@main.command()
@click.option("--queue", default=None, help="Only the workers of this queue.")
@click.option("--all", "include_gone", is_flag=True, help="Also workers that stopped or were last seen too long ago.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per worker.")
@click.pass_obj
@handle_errors
def workers(state: _State, queue: str | None, include_gone: bool, as_json: bool) -> None:
    """List the workers serving each queue: identity, host and pid, when last seen, what they run,
    and the names registered on their queue."""
    found = state.client().workers(queue=queue, include_gone=include_gone)
    if as_json:
        for w in found:
            click.echo(_to_json(w.to_json()))
        return
    if not found:
        where = f"queue {queue!r}" if queue else "any queue"
        click.echo(f"no worker serves {where} now" + ("" if include_gone else " (--all shows those gone)"), err=True)
        return
    now = _dt.datetime.now(_dt.timezone.utc)
    for w in found:
        seen = "never" if w.last_seen_at is None else readable_duration(max((now - w.last_seen_at).total_seconds(), 0)) + " ago"
        state_text = "serving" if w.alive else "gone"
        running = ", ".join(w.running_activities) if w.running_activities else "nothing"
        click.echo(f"{w.identity}  queue={w.queue}  {state_text}, last seen {seen}  running: {running}")
        click.echo(f"    workflows: {', '.join(w.workflows) or 'none'}; activities: {', '.join(w.activities) or 'none'}")


@main.command()
@click.argument("workflow_id")
@click.argument("modules", nargs=-1, required=True)
@click.option("--run", "run_id", default=None, metavar="RUN", help="This run of the id (default: its latest).")
@click.option("--until", default=None, type=click.IntRange(0), metavar="N",
              help="Replay up to event N (a command: to the end of the workflow task that recorded it).")
@click.option("--inspect", "show", is_flag=True,
              help="Print the workflow's state there: attributes, suspended functions' locals, what it waits for.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.pass_obj
@handle_errors
def replay(state: _State, workflow_id: str, modules: tuple[str, ...], run_id: str | None, until: int | None,
           show: bool, as_json: bool) -> None:
    """Replay a workflow's history through the code in MODULES: does the code still match it?

    Nothing runs but workflow code, nothing is written. With --inspect, print the state of the
    code at event N (default: the last): a class workflow's attributes, the local variables of
    its suspended functions, what it waits for; input events that no recorded workflow task
    follows are run live, and the commands the code makes of them printed (not recorded)."""
    from ._reset import replay_command

    replay_command(state, workflow_id, modules, run_id, until, show, as_json)


def run() -> None:
    """Entry point of the `durable` script."""
    main(prog_name="durable")


def _cannot_check(message: str) -> None:
    """`durable check` could not check anything: one line on stderr, exit code 2 (1 says that
    some workflow would break)."""
    click.echo(f"error: {_one_line(message)}", err=True)
    sys.exit(2)


@main.command()
@click.argument("modules", nargs=-1, required=True)
@click.option("--queue", default=None, help="Only the workflows of this queue (default: every queue).")
@click.option("--closed", default=0, show_default=True, type=click.IntRange(0), metavar="N",
              help="Also the N closed runs started last.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per workflow checked (the summary on stderr).")
@click.option("--jobs", "-j", default=None, type=click.IntRange(1, 1024), metavar="J",
              help="Processes that replay histories (default: the CPU count; 1: in this process).")
@click.pass_obj
@handle_errors
def check(state: _State, modules: tuple[str, ...], queue: str | None, closed: int, as_json: bool,
          jobs: int | None) -> None:
    """Would deploying the code in MODULES break running workflows? Replay the history of every
    running workflow (and with --closed N, of the N closed runs started last) through it.

    Nothing runs but workflow code: no activity, nothing written to the store. Prints each
    workflow that would break with the error its replay raised (a NondeterminismError naming
    the event, or a workflow type not registered in MODULES...), then a summary line. Exit
    code 0 if every one matches, 1 if any would break, 2 if the check could not be made."""
    from ._check import run_checks

    try:
        loaded = _import_modules(modules)
        codec = state.codec
    except SystemExit as exc:  # the error is on stderr already
        sys.exit(2 if exc.code == 1 else exc.code)
    registry = durable._defs.Registry.from_modules(loaded)
    if not registry.workflows:
        _cannot_check(f"no workflows found in {', '.join(modules)}")
    try:
        store = durable._backend.open_store(state.target(), create=False)
        runs = durable._check.stored_runs(store, queue=queue, closed=closed)
    except durable.DurableError as exc:
        _cannot_check(str(exc))
    code = f"MODULES ({' '.join(modules)})"
    results = run_checks(
        durable._check.stored_histories(store, runs), len(runs), registry=registry, codec=codec,
        module_names=[m.__name__ for m in loaded], codec_spec=state.codec_spec,
        jobs=jobs or os.cpu_count() or 1, code=code,
    )
    broken = 0
    try:
        for r in results:
            broken += not r.ok
            if as_json:
                click.echo(_to_json(r.to_json()))
            elif not r.ok:
                click.echo(_one_line(f"{r.workflow_id} (run {r.run_id}, {r.workflow_type}) would break: {r.error}"))
    except durable.DurableError as exc:  # the store could not be read
        _cannot_check(str(exc))
    n = len(runs)
    click.echo(f"checked {n} workflow{'' if n == 1 else 's'}: {n - broken} match, {broken} would break",
               err=as_json)
    if broken:
        sys.exit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than the loopback needs a token (one is made).")
@click.option("--port", default=8233, show_default=True, type=click.IntRange(0, 65535), help="0: any free port.")
@click.option("--token", default=None, envvar="DURABLE_UI_TOKEN", metavar="TOKEN",
              help="Require this token on every request (default: a random one off the loopback address; "
                   "$DURABLE_UI_TOKEN).")
@click.pass_obj
@handle_errors
def ui(state: _State, host: str, port: int, token: str | None) -> None:
    """Serve a web UI over the store: workflows, their timelines, signals, cancel and terminate
    (needs pip install 'durable-workflows[ui]'). Prints the URL to open."""
    from durable.ui import serve_sync

    client = state.client()
    serve_sync(client, host=host, port=port, token=token,
               announce=lambda url: click.echo(f"durable ui: serving {state.data or client.data_dir} at {url} "
                                               "(Ctrl-C stops)", err=True))
