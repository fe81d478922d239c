"""How long the README's test of the hello example takes with `durable.testing` (issue 19's
"under 0.2 s"): a `SyncEnvironment` opened, `three_steps` executed, the environment closed,
`--n` times in one process; and the Approval test, whose hour-long timer the clock skips.

    python -m bench.testing_env [--n 20]

Prints one JSON line: the median and the worst of each, in milliseconds (the first run, which
pays for imports and warm-up, is reported apart).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import durable
import durable.testing
from examples.hello import Approval, add_one, double, three_steps


def hello() -> None:
    with durable.testing.SyncEnvironment(workflows=[three_steps], activities=[add_one, double]) as env:
        assert env.execute(three_steps, 1) == 5


def approval() -> None:
    with durable.testing.SyncEnvironment(workflows=[Approval]) as env:
        handle = env.start(Approval, {"amount": 10})
        env.sleep(1800)
        assert handle.query("status") == "pending"
        try:
            env.result(handle)
        except durable.WorkflowFailed:
            return
        raise AssertionError("the hour's timer did not fire")


def timed(fn: object, n: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(n + 1):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return times[0], times[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20)
    args = parser.parse_args()
    out: dict[str, object] = {"system": "durable", "workload": "testing_env", "n": args.n}
    for name, fn in (("hello", hello), ("approval", approval)):
        first, rest = timed(fn, args.n)
        out[f"{name}_first_ms"] = round(first, 1)
        out[f"{name}_median_ms"] = round(statistics.median(rest), 1)
        out[f"{name}_max_ms"] = round(max(rest), 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
