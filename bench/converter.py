"""The data converter's cost per payload: a plain dict, and the same data as a dataclass.

    python -m bench.converter [--n 20000] [--repeats 5] [--crossings 8]

One payload's crossing, as the SDK makes it: on the sending side the arguments made plain by the
function's plan (`_convert.Plan.args_to_plain`) and encoded (`Converter.to_payload`), on the
receiving side decoded (`from_payload`) and built again (`args_from_plain`). Timed for:

- ``plain_dict``: an order as a dict of plain data (str, int, a list of dicts, an aware
  datetime), to a function annotated ``dict[str, Any]`` (its plan is the identity);
- ``plain_dict_codec_only``: the same without the plan, as before the converter: what the
  converter adds to plain data is the difference of the two;
- ``dataclass``: the same order as dataclasses (a Decimal price, an Enum status, a tuple of
  items), to a function annotated with the dataclass.

Each figure is the best of `--repeats` runs of `--n` crossings, in microseconds per payload
(`us_per_payload`), with the converter's part alone (`convert_us`: to plain and back, without
the encoding). ``plain_dict`` also reports `added_us_per_wf`: its cost above
``plain_dict_codec_only`` times `--crossings` (a three_steps workflow makes 8: its input, three
activities' arguments and results, its result), to compare with `worker_cpu_ms_per_wf` of
``python -m bench`` (the converter must stay within 10% of it for plain data).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import enum
import json
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from durable._codec import Converter
from durable._convert import Plan, plan_of


class Status(enum.Enum):
    NEW = "new"
    PAID = "paid"


@dataclasses.dataclass
class Item:
    sku: str
    qty: int
    price: Decimal


@dataclasses.dataclass
class Order:
    order_id: str
    customer: str
    status: Status
    placed: dt.datetime
    items: tuple[Item, ...]
    note: str | None = None


def takes_dict(order: dict[str, Any]) -> None:
    """A function taking the order as a plain dict."""


def takes_order(order: Order) -> None:
    """A function taking the order as a dataclass."""


PLACED = dt.datetime(2026, 12, 6, 22, 0, tzinfo=dt.timezone.utc)
AS_DICT: dict[str, Any] = {
    "order_id": "o-1234", "customer": "c-77", "status": "new", "placed": PLACED,
    "items": [{"sku": f"sku-{i}", "qty": i + 1, "price": 995 + i} for i in range(3)], "note": None,
}
AS_ORDER = Order("o-1234", "c-77", Status.NEW, PLACED,
                 tuple(Item(f"sku-{i}", i + 1, Decimal("9.95") + i) for i in range(3)))


def crossing(plan: Plan | None, converter: Converter) -> Callable[[Any], Any]:
    """One payload's way from sender to receiver (with `plan`, or the codec alone if None)."""
    if plan is None:
        def codec_only(value: Any) -> Any:
            return converter.from_payload(converter.to_payload([value], "arguments"))

        return codec_only

    def convert(value: Any) -> Any:
        payload = converter.to_payload(plan.args_to_plain((value,), "arguments"), "arguments")
        return plan.args_from_plain(converter.from_payload(payload), "arguments")

    return convert


def convert_only(plan: Plan) -> Callable[[Any], Any]:
    """The converter's part alone: to plain data and back, without encoding."""
    def convert(value: Any) -> Any:
        return plan.args_from_plain(plan.args_to_plain((value,), "arguments"), "arguments")

    return convert


def best_us(runs: dict[str, tuple[Callable[[Any], Any], Any]], n: int, repeats: int) -> dict[str, float]:
    """The best of `repeats` runs of `n` calls of each, in microseconds per call; the runs take
    turns, so that a slow spell of the machine falls on all of them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, (fn, value) in runs.items():
            t0 = time.perf_counter()
            for _ in range(n):
                fn(value)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t / n * 1e6 for name, t in best.items()}


def measure(n: int, repeats: int, crossings: int) -> list[dict[str, Any]]:
    """One record per payload kind (see the module docstring)."""
    converter = Converter()
    dict_plan, order_plan = plan_of(takes_dict), plan_of(takes_order)
    assert dict_plan.identity and not order_plan.identity
    back = crossing(order_plan, converter)(AS_ORDER)
    assert back == [AS_ORDER], back  # the dataclass comes back as it went
    us = best_us({
        "plain_dict_codec_only": (crossing(None, converter), AS_DICT),
        "plain_dict": (crossing(dict_plan, converter), AS_DICT),
        "dataclass": (crossing(order_plan, converter), AS_ORDER),
        "plain_dict_convert": (convert_only(dict_plan), AS_DICT),
        "dataclass_convert": (convert_only(order_plan), AS_ORDER),
    }, n, repeats)
    out = []
    for payload in ("plain_dict_codec_only", "plain_dict", "dataclass"):
        rec: dict[str, Any] = {"system": "durable", "workload": "converter", "payload": payload, "n": n,
                               "us_per_payload": round(us[payload], 3)}
        if payload != "plain_dict_codec_only":
            rec["convert_us"] = round(us[payload + "_convert"], 3)
        if payload == "plain_dict":
            rec["added_us_per_wf"] = round(max(0.0, us["plain_dict"] - us["plain_dict_codec_only"]) * crossings, 3)
        out.append(rec)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.converter", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="crossings per run (default: 20000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the best is kept (default: 5)")
    parser.add_argument("--crossings", type=int, default=8,
                        help="payload crossings per workflow, for added_us_per_wf (default: 8, three_steps)")
    args = parser.parse_args(argv)
    for name in ("n", "repeats", "crossings"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for rec in measure(args.n, args.repeats, args.crossings):
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
