"""An HTTP API (FastAPI) that starts workflows and awaits their results with `durable.AsyncClient`,
and an activity that runs on asyncio (where aiohttp, httpx or asyncpg would be used).

Run a worker for this module and the API (``pip install fastapi uvicorn``) against one store:

    durable worker examples.fastapi_orders --data ./.durable
    DURABLE_DATA=./.durable uvicorn examples.fastapi_orders:app

    curl -X POST localhost:8000/orders -H 'content-type: application/json' -d '{"amount": 20}'
    # {"id": "...", "status": "completed", "result": "charged 20 for ..."}
    curl -X POST localhost:8000/orders -H 'content-type: application/json' -d '{"amount": 500}'
    # {"id": "o-1", "status": "running", "result": null}   (it waits for a decision)
    curl -X POST localhost:8000/orders/o-1/decision -H 'content-type: application/json' -d '{"approved": true}'

A request that awaits a result holds no thread and does not block the event loop: the server goes
on answering other requests meanwhile (tests/test_examples_fastapi.py checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import durable

# --- the workflow and its activity (run by `durable worker examples.fastapi_orders`) -----------


@durable.activity(loop="asyncio", start_to_close=30)
async def charge(order_id: str, amount: int) -> str:
    """Charge the customer: an asyncio activity (a payment API's asyncio client would go here)."""
    await asyncio.sleep(0.01)
    durable.heartbeat()
    return f"charged {amount} for {order_id}"


@durable.workflow
class Order:
    """An order: charged at once, or, above 100, once someone approves it."""

    def __init__(self) -> None:
        self.approved: bool | None = None

    async def run(self, amount: int) -> str:
        if amount > 100:
            await durable.wait_condition(lambda: self.approved is not None)
            if not self.approved:
                return "rejected"
        return await charge(durable.info().workflow_id, amount)

    @durable.signal
    def decide(self, approved: bool) -> None:
        self.approved = approved

    @durable.query
    def waiting(self) -> bool:
        return self.approved is None


# --- the HTTP API ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.workflows = durable.AsyncClient()  # the store at $DURABLE_DATA (or ./.durable)
    yield


app = FastAPI(lifespan=lifespan)


class NewOrder(BaseModel):
    amount: int
    id: str | None = None


class Decision(BaseModel):
    approved: bool


class OrderStatus(BaseModel):
    id: str
    status: str
    result: str | None = None


def workflows(request: Request) -> durable.AsyncClient:
    client: durable.AsyncClient = request.app.state.workflows
    return client


@app.post("/orders")
async def create_order(order: NewOrder, request: Request, wait: float = 10.0) -> OrderStatus:
    """Start an order and wait up to `wait` seconds for its result."""
    handle = await workflows(request).start(Order, order.amount, id=order.id or f"o-{uuid.uuid4().hex[:8]}")
    try:
        result = await handle.result(timeout=wait)
    except durable.WaitTimeout:
        return OrderStatus(id=handle.id, status="running")
    return OrderStatus(id=handle.id, status="completed", result=result)


@app.post("/orders/{order_id}/decision")
async def decide(order_id: str, decision: Decision, request: Request) -> OrderStatus:
    """Approve or reject a waiting order."""
    handle = workflows(request).get_handle(order_id)
    try:
        await handle.signal("decide", decision.approved)
    except (durable.WorkflowNotFound, durable.WorkflowClosed) as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    return await get_order(order_id, request, wait=10.0)


@app.get("/orders/{order_id}")
async def get_order(order_id: str, request: Request, wait: float = 0.0) -> OrderStatus:
    """An order's status, and its result once it has one (waiting up to `wait` seconds)."""
    handle = workflows(request).get_handle(order_id)
    try:
        result = await handle.result(timeout=wait)
    except durable.WaitTimeout:
        return OrderStatus(id=order_id, status="running")
    except durable.WorkflowNotFound as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None
    except durable.WorkflowFailed as exc:
        return OrderStatus(id=order_id, status=exc.status)
    return OrderStatus(id=order_id, status="completed", result=result)
