"""A workflow `flow` of up to four steps, in versions that each change one step (for the check
tests, tests/durable/test_check.py and tests/cli/test_cli_check.py).

A version is (what changes, at which step): "rename" (another activity), "timer" (a durable
timer first: the seqs shift), "args" (other arguments: compatible, arguments are not compared),
"patched" (behind ``durable.patched("p")``: compatible by design); ("base", -1) changes nothing.
`VERSIONS` holds them all; the module's one top-level workflow, `flow_checked`, is the version
named by $DURABLE_TEST_FLOW_VERSION ("rename:2"; default "base:-1"), for ``durable check``.
"""

from __future__ import annotations

import os
from typing import Any

import durable

Version = tuple[str, int]
STEPS = 4


@durable.activity
def step(i: int) -> int:
    return i


@durable.activity
def other(i: int) -> int:
    return -i


def flow(version: Version) -> Any:
    """The workflow `flow` in `version`."""
    kind, at = version

    @durable.workflow(name="flow")
    async def flow_version(n: int) -> list[int]:
        done = []
        for i in range(n):
            if i == at and kind == "timer":
                await durable.sleep(1)
            if i == at and kind == "rename":
                done.append(await other(i))
            elif i == at and kind == "args":
                done.append(await step(i + 100))
            elif i == at and kind == "patched" and durable.patched("p"):
                done.append(await other(i))
            else:
                done.append(await step(i))
        return done

    return flow_version


VERSIONS: dict[Version, Any] = {("base", -1): flow(("base", -1))}
for _kind in ("rename", "timer", "args", "patched"):
    for _at in range(STEPS):
        VERSIONS[_kind, _at] = flow((_kind, _at))

_kind, _, _at = os.environ.get("DURABLE_TEST_FLOW_VERSION", "base:-1").partition(":")
flow_checked = VERSIONS[_kind, int(_at)]
