"""Every bound of the system, as a named constant in one place.

Each limit is checked when a value is written and again when it is read back, so that a store
written by hostile or buggy code cannot make a reader allocate without bound.
"""

from __future__ import annotations

#: Largest encoded payload (one argument list, result, signal or query answer), in bytes.
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024
#: Largest encoded record of any kind read from the store, in bytes (a payload plus its envelope).
MAX_RECORD_BYTES = MAX_PAYLOAD_BYTES + 64 * 1024
#: Deepest nesting of CBOR arrays and maps accepted when decoding.
MAX_CBOR_DEPTH = 64
#: Most CBOR values (each number, string, list, map... counts one) in one record or payload: a
#: bound on the memory one decode may take (an empty list costs ~80 bytes from a 1-byte encoding).
MAX_CBOR_ITEMS = 1 << 18
#: Largest exported history accepted by `durable.replay`, in bytes.
MAX_EXPORT_BYTES = 64 * MAX_RECORD_BYTES
#: Most events one workflow's history may hold; appending past it fails the workflow task.
MAX_HISTORY_EVENTS = 50_000
#: A history this long (events) makes `durable.info().continue_as_new_suggested` true, and the
#: workflow's `describe` and its worker's log warn that the limit above is coming (Temporal
#: warns at 10,240 events of its 51,200).
SUGGEST_CONTINUE_AS_NEW_EVENTS = 10_000
#: A history this large (bytes, as `durable.info().history_size` counts them) suggests it too.
SUGGEST_CONTINUE_AS_NEW_BYTES = 10 * 1024 * 1024
#: Most CBOR values in one exported history, all events together (a real event holds ~10-30).
MAX_EXPORT_ITEMS = 64 * MAX_HISTORY_EVENTS
#: Longest workflow id, in UTF-8 bytes (LMDB keys are at most 511 bytes).
MAX_ID_BYTES = 200
#: Longest workflow, activity, signal, query or queue name, in UTF-8 bytes.
MAX_NAME_BYTES = 200
#: Longest reason given to cancel or terminate a workflow, in UTF-8 bytes (kept in its history).
MAX_REASON_BYTES = 8192
#: Longest error text of a failing workflow task kept in its workflow's record, in characters.
MAX_TASK_ERROR_CHARS = 4000
#: Most attempts any retry policy may ask for.
MAX_ATTEMPTS_CAP = 1_000_000
#: Longest backoff interval between attempts, in seconds (a day).
MAX_BACKOFF_SECONDS = 86_400.0
#: Longest duration accepted for a timer, a timeout or a lease, in seconds (ten years).
MAX_DURATION_SECONDS = 10 * 365 * 86_400.0

#: Default lease on a claimed task before another worker may take it over, in seconds.
DEFAULT_LEASE_SECONDS = 10.0
#: Default time a client waits for a query to be answered, in seconds.
DEFAULT_QUERY_TIMEOUT = 10.0
#: Delay before a failed workflow task (a bug in workflow code) is tried again, at most, in seconds.
MAX_WORKFLOW_TASK_RETRY_SECONDS = 10.0
#: Longest time a waiting process sleeps before it looks at the store again if no wake-up came.
POLL_FALLBACK_SECONDS = 1.0
#: How many of the latest workflow closes the store keeps, for clients waiting on results.
CLOSE_LOG_KEEP = 4096
#: Most tasks one worker claims in one transaction.
MAX_CLAIM_BATCH = 64
#: Initial LMDB map size; it doubles whenever it fills up.
INITIAL_MAP_BYTES = 1 << 30
#: Largest LMDB map the store will grow to.
MAX_MAP_BYTES = 1 << 40

#: A worker shows that it serves its queue (see `_ops.record_presence`) with its heartbeats, at
#: least this often apart even with a short lease, and an idle worker as often.
MIN_PRESENCE_SECONDS = 1.0

#: The records of workers gone for longer than this are forgotten when a worker of their queue
#: starts (the latest is always kept, for "no worker has polled queue X since T").
PRESENCE_KEEP_NS = 7 * 86_400 * 1_000_000_000

#: Most slots of one schedule one transaction fires (a long catch-up goes on in the next ones).
SCHEDULE_FIRE_BATCH = 64
#: How many of its latest starts a schedule keeps for `describe`.
SCHEDULE_RECENT_ACTIONS = 10
#: Most slots one backfill takes (one transaction).
MAX_BACKFILL_SLOTS = 10_000
#: Longest schedule id, in bytes: the ids of the workflows it starts add a time to it and must fit
#: in MAX_ID_BYTES.
MAX_SCHEDULE_ID_BYTES = 160
