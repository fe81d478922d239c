"""A workflow and an activity that log through `durable.logger`."""

from __future__ import annotations

import durable


@durable.activity
def shout(word: str) -> str:
    durable.logger.info("shouting %s", word)
    return word.upper()


@durable.workflow
async def chatty(words: list[str]) -> list[str]:
    out = []
    for i, word in enumerate(words):
        out.append(await shout(word))
        durable.logger.info("step %d done", i)
    return out
