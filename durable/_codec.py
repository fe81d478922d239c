"""CBOR encoding of records and payloads, decoded defensively.

Records (events, workflow records, tasks) and user payloads are CBOR. Decoding bounds the size
first, caps the nesting depth, forbids duplicate map keys and refuses the CBOR tags that run code
or build bombs (regular expressions, MIME messages, decimals, shared and cyclic values). Every
failure to decode becomes our own `DecodeError`; nothing else escapes.

User payloads additionally pass through an optional `PayloadCodec` (for example encryption),
applied to every payload written and read.
"""

from __future__ import annotations

import traceback
from typing import Any, Protocol

import cbor2

from ._errors import ApplicationError, DecodeError, PayloadError
from ._limits import MAX_CBOR_DEPTH, MAX_PAYLOAD_BYTES, MAX_RECORD_BYTES


def _refuse_tag(decoder: Any) -> Any:
    raise cbor2.CBORDecodeError("this CBOR tag is not accepted")


# Tags whose decoders compile regexes, parse MIME, build Decimal bombs, or create shared/cyclic
# structures. Unknown tags decode to inert `CBORTag` objects.
_REFUSED_TAGS = (4, 5, 25, 28, 29, 30, 35, 36, 256, 260, 261, 262, 263, 270, 1004)
_SEMANTIC = {tag: _refuse_tag for tag in _REFUSED_TAGS}


def encode(obj: Any) -> bytes:
    """Encode an internal record. Internal records hold only plain types."""
    return cbor2.dumps(obj)


def decode(data: bytes, *, limit: int = MAX_RECORD_BYTES, what: str = "record") -> Any:
    """Decode bytes read from the store; raise `DecodeError` for anything not a valid value."""
    if len(data) > limit:
        raise DecodeError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    try:
        return cbor2.loads(
            data,
            max_depth=MAX_CBOR_DEPTH,
            allow_duplicate_keys=False,
            semantic_decoders=_SEMANTIC,
        )
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply") from None
    except Exception as exc:  # cbor2 documents that hostile input may raise other errors
        raise DecodeError(f"{what} is not valid CBOR: {exc}") from None


class PayloadCodec(Protocol):
    """A transformation applied to every payload's bytes: for example encryption.

    `encode` runs on every payload before it is written to the store; `decode` on every payload
    read back. Both must be pure functions of their input (decode(encode(b)) == b).
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


class Converter:
    """Turns user values into payload bytes and back, through an optional `PayloadCodec`."""

    def __init__(self, codec: PayloadCodec | None = None) -> None:
        self.codec = codec

    def to_payload(self, value: Any, what: str) -> bytes:
        """Encode `value` (described by `what` in errors); raise `PayloadError` if impossible."""
        try:
            data = cbor2.dumps(value)
        except Exception as exc:
            raise PayloadError(
                f"{what} cannot be stored: {_type_name(value, exc)} is not CBOR-encodable "
                "(use plain data: None, bool, int, float, str, bytes, list, dict, datetime)"
            ) from None
        if self.codec is not None:
            data = self.codec.encode(data)
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadError(
                f"{what} is {len(data)} bytes encoded, over the payload limit of "
                f"{MAX_PAYLOAD_BYTES} bytes"
            )
        return data

    def from_payload(self, data: bytes, what: str = "payload") -> Any:
        """Decode payload bytes read from the store."""
        if self.codec is not None:
            try:
                data = self.codec.decode(data)
            except Exception as exc:
                raise DecodeError(f"{what}: the payload codec could not decode it: {exc}") from None
        return decode(data, limit=MAX_PAYLOAD_BYTES, what=what)


def _type_name(value: Any, exc: Exception) -> str:
    text = str(exc)
    if "type" in text:
        return text.split("type", 1)[1].strip().strip("<>").replace("class ", "").strip("'")
    return type(value).__qualname__


# --- errors as records -------------------------------------------------------------------

_MAX_ERROR_TEXT = 8192


def error_to_record(exc: BaseException) -> dict[str, Any]:
    """Describe an exception tree as plain data: type, message, stack, cause and children."""
    rec: dict[str, Any] = {
        "type": getattr(exc, "type", None) if isinstance(exc, ApplicationError) else _qualname(exc),
        "msg": (exc.message if isinstance(exc, ApplicationError) else str(exc))[:_MAX_ERROR_TEXT],
    }
    if isinstance(exc, ApplicationError):
        if exc.non_retryable:
            rec["nr"] = True
        stack = exc.stack
    else:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))
    if stack:
        rec["stack"] = stack[-_MAX_ERROR_TEXT:]
    if isinstance(exc, BaseExceptionGroup):
        rec["msg"] = exc.message[:_MAX_ERROR_TEXT]
        rec["children"] = [error_to_record(child) for child in exc.exceptions[:100]]
    cause = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    if cause is not None and not isinstance(exc, BaseExceptionGroup):
        rec["cause"] = error_to_record(cause)
    return rec


def error_from_record(rec: Any) -> Exception:
    """Rebuild an exception tree from `error_to_record` output (never importing any type)."""
    if not isinstance(rec, dict):
        return ApplicationError(f"malformed error record: {rec!r}"[:200])
    children = rec.get("children")
    msg = str(rec.get("msg", ""))
    if isinstance(children, list) and children:
        return ExceptionGroup(msg or "errors", [error_from_record(c) for c in children])
    err = ApplicationError(
        msg,
        type=str(rec.get("type") or "Error"),
        non_retryable=bool(rec.get("nr", False)),
        stack=str(rec.get("stack", "")),
    )
    if "cause" in rec:
        err.__cause__ = error_from_record(rec["cause"])
    return err


def format_error_record(rec: Any, indent: str = "") -> str:
    """Render an error record tree as readable lines (for `describe` and `history`)."""
    if not isinstance(rec, dict):
        return f"{indent}{rec!r}"
    line = f"{indent}{rec.get('type', 'Error')}: {rec.get('msg', '')}"
    lines = [line]
    for child in rec.get("children") or []:
        lines.append(format_error_record(child, indent + "  | "))
    if "cause" in rec:
        lines.append(f"{indent}  caused by:")
        lines.append(format_error_record(rec["cause"], indent + "    "))
    return "\n".join(lines)


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    mod = cls.__module__
    if mod in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{mod}.{cls.__qualname__}"
