"""A payload codec and a workflow for the codec tests that run `durable` as real processes
(``durable --codec tests.wfs.codecs:XorCodec ...``, or ``DURABLE_CODEC=tests.wfs.codecs:XorCodec``)."""

from __future__ import annotations

import durable


class XorCodec:
    """A reversible codec with a header, as an encrypting codec would look (not encryption!)."""

    HEADER = b"XOR1"
    TABLE = bytes(b ^ 0x5A for b in range(256))

    def encode(self, data: bytes) -> bytes:
        return self.HEADER + data.translate(self.TABLE)

    def decode(self, data: bytes) -> bytes:
        if not data.startswith(self.HEADER):
            raise ValueError("not an XOR1 payload (written without the codec?)")
        return data[len(self.HEADER):].translate(self.TABLE)


@durable.activity
def wrap(text: str) -> str:
    return f"<{text}>"


@durable.workflow
async def wrapped(text: str) -> str:
    return await wrap(text + "-arg")


class WrongKeyXorCodec(XorCodec):
    """`XorCodec`'s format with another key: what a client with the wrong key reads."""

    TABLE = bytes(b ^ 0x33 for b in range(256))


@durable.workflow(failure_exceptions=(RuntimeError,))
async def broken(text: str) -> str:
    await wrap(text)
    raise RuntimeError(text + "-failed")
