"""Cancelling a running workflow from outside: the running step stops, compensations run.

``handle.cancel()`` (or ``durable cancel ID``) is cooperative. The workflow sees `Cancelled` at
its await points; an activity it is waiting for gets a cancel request, which its worker learns at
the next heartbeat. An async activity is cancelled at its next trio checkpoint; a synchronous one,
like `transcode` below, learns it when it calls ``durable.heartbeat()``, which then raises
``durable.ActivityCancelled``. The workflow's saga does not compensate before the step has
confirmed (``ActivityCancelled`` in history), then runs its compensations newest first, shielded,
and the workflow ends as *cancelled*. (``terminate`` is the other way: it ends the workflow at
once and runs none of its code.)

    durable worker examples.cancellation
    durable start publish_video --input '{"video": "cat.mp4"}' --id v-1
    durable cancel v-1
    durable result v-1        # the workflow was cancelled
    durable history v-1       # ActivityCancelRequested, ActivityCancelled (transcode), then
                              # delete_partial_outputs and delete_upload, WorkflowCancelled
"""

from __future__ import annotations

import time
from typing import Any

import durable


@durable.activity
def upload(video: dict[str, Any]) -> str:
    """Store the source file; returns where."""
    return f"uploads/{video['video']}"


@durable.activity
def transcode(source: str, chunks: int, seconds_per_chunk: float) -> str:
    """A long synchronous step that cooperates with cancellation.

    Between chunks it reports its progress with ``durable.heartbeat(done)``: that call raises
    ``durable.ActivityCancelled`` once the workflow asked to cancel this step (clean up in
    ``finally``, and let it propagate). A retry after a crash resumes from the last progress.
    """
    done = durable.activity_info().heartbeat_details or 0
    while done < chunks:
        time.sleep(seconds_per_chunk)  # one chunk of real work
        done += 1
        durable.heartbeat(done)
    return f"outputs/{source.rsplit('/', 1)[-1]}"


@durable.activity
def delete_partial_outputs(source: str) -> str:
    """Compensation of `transcode`: removes whatever chunks it wrote (none is fine)."""
    return f"deleted outputs of {source}"


@durable.activity
def delete_upload(source: str) -> str:
    """Compensation of `upload`."""
    return f"deleted {source}"


@durable.activity
def publish(outputs: str) -> str:
    """Make the video public; returns its address."""
    return f"https://videos.example/{outputs}"


@durable.workflow
async def publish_video(video: dict[str, Any]) -> str:
    """Upload, transcode (long), publish; if cancelled or failed, clean up newest first."""
    async with durable.saga() as saga:
        source = await upload(video)
        saga.add_compensation(delete_upload, source)
        # registered *before* the step: a transcode stopped half-way leaves partial outputs
        saga.add_compensation(delete_partial_outputs, source)
        outputs = await transcode(source, video.get("chunks", 600), video.get("seconds_per_chunk", 0.05))
        return await publish(outputs)
