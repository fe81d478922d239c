"""examples/cart.py, the update-based request/response, with a real worker; and the
`durable update` command on it."""

from __future__ import annotations

import pytest

import durable
from examples import cart
from tests.cli.test_cli import cli, fails, ok
from tests.test_examples import assert_replays, serving

TIMEOUT = 30


def test_cart_updates_answer_and_refuse(data_dir: str) -> None:
    client = durable.Client(data_dir)
    with serving(cart, data_dir):
        handle = client.start(cart.Cart, id="cart-1")
        assert handle.update("add_item", "apple", 3, timeout=TIMEOUT) == 3.0
        assert handle.update("add_item", "pear", 2, update_id="req-7", timeout=TIMEOUT) == 6.0
        assert handle.update("add_item", "pear", 2, update_id="req-7", timeout=TIMEOUT) == 6.0  # once
        before = handle.history()
        with pytest.raises(durable.UpdateRejected, match="no such product 'rock'"):
            handle.update("add_item", "rock", 1, timeout=TIMEOUT)
        with pytest.raises(durable.UpdateRejected, match="quantity must be an integer from 1 to 100, not 0"):
            handle.update("add_item", "apple", 0, timeout=TIMEOUT)
        assert handle.history() == before  # refusals are not recorded
        assert handle.query("current_total") == 6.0
        summary = {"items": {"apple": 3, "pear": 2}, "total": 6.0}
        assert handle.update("checkout", timeout=TIMEOUT) == summary
        assert handle.result(TIMEOUT) == summary
    assert_replays(handle, cart.Cart)


def test_durable_update_command(data_dir: str) -> None:
    with serving(cart, data_dir):
        assert ok(cli(data_dir, "start", "Cart", "--id", "cart-1")) == "cart-1\n"
        assert ok(cli(data_dir, "update", "cart-1", "add_item", '"apple"', "3")) == "3.0\n"
        assert ok(cli(data_dir, "update", "cart-1", "add_item", '"pear"', "2", "--update-id", "r7")) == "6.0\n"
        assert ok(cli(data_dir, "update", "cart-1", "add_item", '"pear"', "2", "--update-id", "r7")) == "6.0\n"
        fails(cli(data_dir, "update", "cart-1", "add_item", '"rock"', "1"), 1,
              "update 'add_item' rejected by its validator: ValueError: no such product 'rock'")
        fails(cli(data_dir, "update", "cart-1", "remove_item", '"apple"'), 1,
              "workflow type 'Cart' has no update 'remove_item' (updates: add_item, checkout)")
        fails(cli(data_dir, "update", "cart-1", "add_item", "apple"), 2, "argument 1 is not valid JSON")
        fails(cli(data_dir, "update", "nope", "checkout"), 1, "no workflow with id 'nope'")
        history = ok(cli(data_dir, "history", "cart-1"))
        assert "UpdateAccepted" in history and 'uid="r7"' in history and "UpdateCompleted" in history
        assert ok(cli(data_dir, "update", "cart-1", "checkout")) == '{"items": {"apple": 3, "pear": 2}, "total": 6.0}\n'
        fails(cli(data_dir, "update", "cart-1", "add_item", '"apple"', "1"), 1,
              "cannot send update 'add_item' to workflow 'cart-1': it has completed")


def test_cart_in_the_testing_environment() -> None:
    """Updates work in `durable.testing`'s environment too (a worker in the test's process)."""
    import durable.testing

    with durable.testing.SyncEnvironment(workflows=[cart.Cart], activities=[cart.price_of]) as env:
        handle = env.client.start(cart.Cart, id="c")
        assert handle.update("add_item", "melon", 1, timeout=TIMEOUT) == 4.0
        with pytest.raises(durable.UpdateRejected, match="no such product"):
            handle.update("add_item", "rock", 1, timeout=TIMEOUT)
        assert handle.update("checkout", timeout=TIMEOUT) == {"items": {"melon": 1}, "total": 4.0}
        assert env.result(handle) == {"items": {"melon": 1}, "total": 4.0}
