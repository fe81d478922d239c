"""examples/fastapi_orders.py: the FastAPI app, its lifespan included, on an asyncio event loop,
against a real worker process and a real store. Requests go through httpx's ASGI transport, in
the same loop as the app.

One request awaits an order's result while the test sends others to the same app: they are
answered, and one of them is the decision that ends the awaited order, so an await that blocked
the event loop would leave every request hanging (and the test with them).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

import durable
from examples import fastapi_orders
from tests.conftest import ROOT, worker_process

TIMEOUT = 30


async def _exercise(api: httpx.AsyncClient) -> None:
    small = await api.post("/orders", json={"amount": 20, "id": "small"})
    assert small.status_code == 200
    assert small.json() == {"id": "small", "status": "completed", "result": "charged 20 for small"}

    big = asyncio.create_task(api.post("/orders", params={"wait": TIMEOUT}, json={"amount": 500, "id": "big"}))
    async with asyncio.timeout(TIMEOUT):
        while not await _waits(api):  # served while the first request awaits its result
            await asyncio.sleep(0.02)
    assert not big.done()
    decided = await api.post("/orders/big/decision", json={"approved": True})
    assert decided.json() == {"id": "big", "status": "completed", "result": "charged 500 for big"}
    answer = await asyncio.wait_for(big, TIMEOUT)
    assert answer.status_code == 200
    assert answer.json() == {"id": "big", "status": "completed", "result": "charged 500 for big"}

    assert (await api.post("/orders", params={"wait": 0}, json={"amount": 200, "id": "no"})).json()["status"] == "running"
    assert (await api.post("/orders/no/decision", json={"approved": False})).json()["result"] == "rejected"
    assert (await api.get("/orders/nobody")).status_code == 404
    assert (await api.post("/orders/nobody/decision", json={"approved": True})).status_code == 404


async def _waits(api: httpx.AsyncClient) -> bool:
    """Whether order "big" is started and waits for its decision (the API says running)."""
    got = await api.get("/orders/big")
    return got.status_code == 200 and got.json() == {"id": "big", "status": "running", "result": None}


def test_the_api_starts_orders_awaits_results_and_serves_others_meanwhile(
    data_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DURABLE_DATA", data_dir)
    app = fastapi_orders.app

    async def main() -> None:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://orders") as api:
                await _exercise(api)

    with worker_process(data_dir, "examples.fastapi_orders"):
        asyncio.run(main())

    # the charge ran as an asyncio activity, once per charged order
    client = durable.Client(data_dir)
    charged = [e["result"] for wid in ("small", "big", "no") for e in client.get_handle(wid).history()
               if e["kind"] == "ActivityCompleted"]
    assert charged == ["charged 20 for small", "charged 500 for big"]
    for wid in ("small", "big", "no"):  # each history replays through the example's code
        handle = client.get_handle(wid)
        assert durable.replay(fastapi_orders.Order, handle.export_history()) == len(handle.history())


def test_the_readme_shows_the_example_as_it_is() -> None:
    """The README's blocks from examples/fastapi_orders.py are in the file, each paragraph as is."""
    from tests.test_readme import README, _blocks

    source = (ROOT / "examples" / "fastapi_orders.py").read_text()
    shown = [b for b in _blocks(README) if b.startswith("# examples/fastapi_orders.py")]
    assert len(shown) == 2
    for block in shown:
        for paragraph in block.split("\n", 1)[1].split("\n\n"):
            assert paragraph.strip() in source, paragraph
