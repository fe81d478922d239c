"""An entity workflow: one workflow per bank account, alive as long as the account is.

It takes deposits as signals, answers queries from its live state, and keeps its history short
by continuing as new every `every` deposits (or sooner, when `durable.info()` suggests it): the
run ends and a new run of the same id starts from the balance, in one transaction, and any
deposit sent meanwhile reaches the new run. Handles follow the chain: a signal, a query or
`result()` goes to the latest run; `describe` of an earlier run names the next one.

    durable worker examples.account
    durable start Account --input '[0, 100]' --id acct-1
    durable signal acct-1 deposit 25
    durable query acct-1 current_balance        # -> 25
    durable signal acct-1 close_account
    durable result acct-1                       # -> 25
    durable list --all-runs --type Account      # one line per run: continued_as_new ... completed
"""

from __future__ import annotations

import durable


@durable.workflow
class Account:
    """Deposits come in as signals; the balance is applied by `run`, which continues as new
    every `every` deposits so that no run's history grows without bound."""

    def __init__(self) -> None:
        self.balance = 0
        # The handlers only queue what came in: the signals a new run is handed arrive before
        # its `run` starts, and `run` sets the balance it was given first.
        self.deposits: list[int] = []
        self.closing = False
        self.applied = 0  # deposits applied by this run

    async def run(self, balance: int, every: int = 100) -> int:
        self.balance = balance
        while True:
            await durable.wait_condition(lambda: bool(self.deposits) or self.closing)
            while self.deposits:
                self.balance += self.deposits.pop(0)
                self.applied += 1
            if self.closing:
                return self.balance
            if self.applied >= every or durable.info().continue_as_new_suggested:
                durable.continue_as_new(self.balance, every)

    @durable.signal
    def deposit(self, amount: int) -> None:
        self.deposits.append(amount)

    @durable.signal
    def close_account(self) -> None:
        self.closing = True

    @durable.query
    def current_balance(self) -> int:
        return self.balance + sum(self.deposits)

    @durable.query
    def run_info(self) -> dict[str, object]:
        """Which run answers, and how long its history is."""
        info = durable.info()
        return {"run_id": info.run_id, "continued_from": info.continued_from_run_id,
                "history_length": info.history_length}
