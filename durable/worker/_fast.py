"""The worker's fast paths: second ways to do what the usual path does, with fewer commits, tasks
or thread hops, and the setting that turns them off.

The usual path of a step: a workflow task is claimed from the queue (one commit), its activation
recorded with the activities it schedules put in the queue (one commit); each activity is claimed
(one commit), run in a trio task and cancel scope of its own, its result recorded (one commit),
which queues the next workflow task; a fired timer queues a workflow task too. Each fast path
below writes what that path writes, or nothing; its invariant is stated at its definition too.

======================  ===================================  =====================================
flag (`FastPaths`)      where                                what it skips
======================  ===================================  =====================================
``ahead``               `_ahead.RunAhead._run_ahead`         recording a new task before its
                                                             activities run, and their attempts
``rounds``              `_rounds.Rounds._join_continue`,     a result's own commit and the queue
                        `_continue_run`, `_speculate`,       round trip of the task it makes
                        `_step_here`
``inline``              `_inline.Inline._run_inline`,        a trio task and cancel scope per
                        `_inlinable`, `_first_step`          async attempt
``eager``               `_workflow_tasks.WorkflowTasks.      queueing a scheduled activity and
                        _eager_seqs`, `_eager`               the commit that claims it
``sticky``              `_activities.Activities.             the poller's claim of the task a
                        _record_report`                      result makes
``unclaimed``           `_polling.Polling._poll`,            the claim's own commit before a
                        `_workflow_tasks._claimed_then`      workflow task runs
``timer_claims``        `_clock.Clock._fire_and_claim`       the poller's claim of the task a
                                                             fired timer makes
``forward``             `_threads.BatchThread._forward`      the trio thread's hop between the
                                                             engine and the writer
``local_wakeups``       `_base.WorkerBase._write_batch`      our own commits' round trip through
                                                             the wake-up socket
``updates_known``       `_workflow_tasks.WorkflowTasks.      the read of pending update requests
                        _activate`                           when the task's item says none
``serial_batches``      `_base.WorkerBase._write_batch`,     (PostgreSQL) running workers'
                        `durable._pg.PgStore._run`           batches side by side, and the
                                                             serializable check's re-runs
======================  ===================================  =====================================

Why each stays crash safe and fenced, in one line (details at each definition):

- ``ahead``: nothing is written until one transaction records the task (under its token, or
  claiming it: `_claimed_then`), its activities' results and the next task; a death before it
  leaves the task to be run again, and the activities run again: at least once, as always.
- ``rounds``: each result is accepted only under its attempt's current lease (`_fenced_act`), the
  task it makes only if the history is still the one the instance saw; else the accepted
  results alone are recorded, as by the usual path, and the instance is dropped.
- ``inline``: changes only how the code of a claimed attempt runs here, not what is written; an
  attempt that waits gets a real cancel scope with its deadline, and one that has not started
  yet is stopped by its context's flags.
- ``eager``, ``sticky``, ``timer_claims``: the claim (token, lease, deadline) is written in the
  transaction that makes the task, so the task is never visible unclaimed; a death after the
  commit leaves a leased task, which expires and is retried like any other claim.
- ``unclaimed``: workflow code has no effects; the claim is made in the transaction that records
  the outcome, only if the task is still the same queued task over the same history
  (`_ops.claim_peeked_wft`), else the outcome is dropped.
- ``forward``, ``local_wakeups``: change who waits for what in this process, not what is written.
- ``serial_batches``: the workers' batches run one at a time (PostgreSQL: each locks the table
  ``durable_writers`` in a mode that conflicts with itself, before its snapshot), which is a
  serial order the serializable check accepts anyway; other writes still run beside them under
  that check. Nothing written changes; on LMDB, whose writes are one at a time, it does nothing.
- ``updates_known``: reads nothing it would have found then: the item counts the run's pending
  updates when the task was handed out (`_ops._wft_item`), and one sent since is for the task
  that this one's end queues (`_ops._record_commands` queues one while the record counts any).

Not switched, and why: learning of cancel requests between heartbeats
(`_activities.Activities._watch_cancellations`) is a second way to learn what heartbeats say, but
it only reads, and the heartbeat still does the same; the store's own short cuts (ops run in the
write transaction, nested only when one fails; records kept decoded by the transaction that wrote
them, checked by ``DURABLE_MEMO_CHECK=1``) are the store's, below the worker.

With ``Worker(..., fast_paths=False)``, or ``DURABLE_FAST_PATHS=0`` in the environment (read when
the worker is made; it wins over the argument), every step takes the usual path: slower (about
twice the commits per step), for tests of the usual path and for ruling the fast paths out when
looking for a bug. ``fast_paths=FastPaths(ahead=False)`` turns off single paths.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from durable._errors import DurableError

#: The environment variable that turns every fast path off ("0") for the workers made after it is set.
ENV = "DURABLE_FAST_PATHS"


@dataclass(frozen=True, slots=True)
class FastPaths:
    """Which of the worker's fast paths are on (all by default); see `durable.worker._fast`.

    Each is a second way to do what the usual path does; off, the usual path does it.
    """

    #: a new workflow task that only schedules async activities of our queue runs them before it
    #: is recorded, and is recorded with their results and the next task in one transaction
    ahead: bool = True
    #: a result of a run whose live instance we hold is recorded with the task it makes
    rounds: bool = True
    #: the async attempts one transaction claims run one after another in one trio task
    inline: bool = True
    #: activities a task schedules on our queue are claimed in the transaction that records it
    eager: bool = True
    #: a result's transaction claims the workflow task it makes, if we hold the live instance
    sticky: bool = True
    #: an idle worker runs a few small waiting workflow tasks before claiming them
    unclaimed: bool = True
    #: the transaction that fires timers claims the workflow tasks they make on our queue
    timer_claims: bool = True
    #: the engine thread hands the op it made straight to the writer thread
    forward: bool = True
    #: our own commits wake our poller and clock directly, not through the wake-up socket
    local_wakeups: bool = True
    #: a workflow task whose run had no update pending when it was handed out reads none
    updates_known: bool = True
    #: the workers' write batches run one at a time (PostgreSQL; LMDB's always do)
    serial_batches: bool = True

    @classmethod
    def none(cls) -> FastPaths:
        """Every fast path off: the usual path for everything."""
        return cls(**{field.name: False for field in dataclasses.fields(cls)})


def fast_paths_setting(given: bool | FastPaths, environ: Mapping[str, str] | None = None) -> FastPaths:
    """The fast paths a worker uses: `given` (``Worker(fast_paths=...)``), unless the
    environment says ``DURABLE_FAST_PATHS=0`` (then none; "1" or unset: as given)."""
    env = (os.environ if environ is None else environ).get(ENV, "")
    if env not in ("", "0", "1"):
        raise DurableError(f"{ENV} must be 0 (every fast path off) or 1, not {env!r}")
    if isinstance(given, FastPaths):
        chosen = given
    elif isinstance(given, bool):
        chosen = FastPaths() if given else FastPaths.none()
    else:
        raise DurableError(f"fast_paths must be True, False or a FastPaths, not {given!r}")
    return FastPaths.none() if env == "0" else chosen
