"""CBOR encoding of records and payloads, decoded defensively.

Records (events, workflow records, tasks) and user payloads are CBOR. Decoding bounds the size
first, caps the nesting depth, forbids duplicate map keys and trailing bytes, and refuses the CBOR
tags that run code or build bombs (regular expressions, MIME messages, decimals, shared and cyclic
values). An input over 4 KiB is first walked without building anything (`scan`), which bounds the
number of values it may hold (memory) and refuses map keys that could be made to collide in a
hash table (time). Every failure to decode becomes our own `DecodeError`; nothing else escapes.
Payloads are checked the same way when they are written, so what is written can be read; and they
hold plain data only (see `Converter`), so what is read is what was written: a value of another
type is made plain by its own type (`_convert.value_to_plain`: a dataclass to a map...), or
refused with a message naming its path inside the value and what to pass instead. Typed values
are built again from plain data by the annotations of the receiving side (`_convert`).

User payloads additionally pass through an optional `PayloadCodec` (for example encryption),
applied to every payload written and read, and to failures (error messages and stack traces)
unless asked not to; what a codec made is marked as such (`_ENCODED`), so that a reader without
the codec, or with another, says so instead of failing to decode it. Each client and worker has
its own `Converter` (and so codec): the store, shared by everything in a process, has none.
"""

from __future__ import annotations

import io
import re
import traceback
from typing import Any, Protocol

import cbor2

from ._errors import ApplicationError, DecodeError, PayloadError
from ._limits import MAX_CBOR_DEPTH, MAX_CBOR_ITEMS, MAX_PAYLOAD_BYTES, MAX_RECORD_BYTES
from ._convert import value_to_plain
from ._plain import is_plain, refusal


def _refuse_tag(decoder: Any) -> Any:
    raise cbor2.CBORDecodeError("this CBOR tag is not accepted")


# Tags whose decoders compile regexes, parse MIME, build Decimal bombs, or create shared/cyclic
# structures. Unknown tags decode to inert `CBORTag` objects.
_REFUSED_TAGS = (4, 5, 25, 28, 29, 30, 35, 36, 256, 260, 261, 262, 263, 270, 1004)
_SEMANTIC = {tag: _refuse_tag for tag in _REFUSED_TAGS}

#: Inputs up to this size go straight to cbor2: whatever they hold, they cannot take much memory
#: or time. Larger ones are first walked by `scan` (pure Python, ~0.3 us per value).
_SCAN_ABOVE = 4096


def encode(obj: Any) -> bytes:
    """Encode an internal record. Internal records hold only plain types."""
    return cbor2.dumps(obj)


def decode(data: bytes, *, limit: int = MAX_RECORD_BYTES, what: str = "record") -> Any:
    """Decode bytes read from the store; raise `DecodeError` for anything not a valid value.

    Exactly one CBOR value, with nothing after it, within `limit` bytes and the limits of `scan`.
    """
    if len(data) <= _PLAIN_BELOW and _MAYBE_REFUSED.search(data) is None:
        # Short and plain (see `_PLAIN_BELOW`): if the bytes are exactly how cbor2 writes the
        # value they hold, they hold nothing the careful decoder below would refuse or read
        # differently (no duplicate keys, nothing after the value); else that decoder decides.
        try:
            value = cbor2.loads(data)
            if cbor2.dumps(value) == data:
                return value
        except Exception:  # noqa: BLE001 - the careful decoder says what is wrong
            pass
    return decode_carefully(data, limit=limit, what=what)


def decode_carefully(data: bytes, *, limit: int = MAX_RECORD_BYTES, what: str = "record") -> Any:
    """`decode` without its short cut for short plain bytes (which must agree with this)."""
    if len(data) > limit:
        raise DecodeError(f"{what} is {len(data)} bytes, over the limit of {limit} bytes")
    if len(data) > _SCAN_ABOVE:
        try:
            end, _ = scan(data)
        except ValueError as exc:
            raise DecodeError(f"{what} is not valid CBOR: {exc}") from None
        if end != len(data):
            raise DecodeError(f"{what} is not valid CBOR: {len(data) - end} bytes follow the value")
    try:
        stream = io.BytesIO(data)
        value = cbor2.CBORDecoder(  # a fresh decoder each time: nothing is shared between decodes
            stream, max_depth=MAX_CBOR_DEPTH, allow_duplicate_keys=False, semantic_decoders=_SEMANTIC,
        ).decode()
    except RecursionError:
        raise DecodeError(f"{what} is nested too deeply") from None
    except Exception as exc:  # cbor2 documents that hostile input may raise other errors
        raise DecodeError(f"{what} is not valid CBOR: {str(exc)[:200]}") from None
    if stream.tell() != len(data):
        raise DecodeError(f"{what} is not valid CBOR: {len(data) - stream.tell()} bytes follow the value")
    return value


def decode_run(data: bytes, start: int, most: int) -> list[tuple[Any, int]]:
    """Decode up to `most` values one after another from `start`, each that ends within the
    `_SCAN_ABOVE` bytes from `start`: [(value, offset after it)...]. Stops at the first value
    that does not (or is not valid CBOR): `scan` that one, then `decode` it.

    The decoder is given only those bytes, so whatever they hold cannot take much memory or time,
    with the options `decode` uses: each value is what `decode` would make of exactly its bytes."""
    stream = io.BytesIO(data[start:start + _SCAN_ABOVE])
    decoder = cbor2.CBORDecoder(
        stream, max_depth=MAX_CBOR_DEPTH, allow_duplicate_keys=False, semantic_decoders=_SEMANTIC,
    )
    out: list[tuple[Any, int]] = []
    while len(out) < most:
        try:
            value = decoder.decode()
        except Exception:  # noqa: BLE001 - the careful path finds out and says what is wrong
            break
        out.append((value, start + stream.tell()))
    return out


def count_values(value: Any) -> int:
    """How many CBOR values a decoded value holds, as `scan` counts them in its encoding (each
    number, string, list, map, tag... counts one; a value a tag made, such as a bignum or a
    datetime, counts two: the tag and what it holds)."""
    nested, one, big = _NESTED, _ONE, 1 << 64
    count = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        count += 1
        if kind is dict or kind is _FROZENDICT:
            count += 2 * len(item)
            for pair in item.items():
                for val in pair:
                    kind = type(val)
                    if kind in nested:
                        stack.append(val)
                        count -= 1  # counted when it is taken from the stack
                    elif kind is int:
                        if val >= big or val < -big:
                            count += 1  # a bignum: tag 2 or 3 and its bytes
                    elif kind not in one:
                        count += 1  # a datetime, a UUID...: a tag and the value it wraps
        elif kind is cbor2.CBORTag:
            stack.append(item.value)
        elif kind in nested:
            count += len(item) + (kind is set or kind is frozenset)  # a set: tag 258 around a list
            for val in item:
                kind = type(val)
                if kind in nested:
                    stack.append(val)
                    count -= 1
                elif kind is int:
                    if val >= big or val < -big:
                        count += 1
                elif kind not in one:
                    count += 1
        elif kind is int:
            if item >= big or item < -big:
                count += 1
        elif kind not in one:
            count += 1
    return count


# Types that are one CBOR value each, with no tag.
_ONE = frozenset({str, bytes, float, bool, type(None), cbor2.CBORSimpleValue, type(cbor2.undefined)})
# Types that hold other values, as cbor2 decodes them (a list used as a map key, or inside a tag,
# is a tuple; a map inside a tag is a cbor2.frozendict).
_FROZENDICT = type(cbor2.loads(b"\xd9\x0b\xb8\xa0").value)  # tag 3000 around an empty map
_NESTED = frozenset({dict, _FROZENDICT, list, tuple, set, frozenset, cbor2.CBORTag})


# --- a walk over CBOR bytes that builds nothing --------------------------------------------

# Python hashes an int as its value modulo 2**61 - 1, without a random key: distinct integers
# beyond this bound can be chosen to share one hash, which makes building a dict of them take
# quadratic time. Strings and bytes are hashed with a random key; tuples, frozensets and tagged
# values are built from ints, so they are refused as keys (by `scan`, in inputs over 4 KiB).
_HASH_SAFE = (1 << 61) - 2
_ARG_BYTES = (1, 2, 4, 8)
_TOP, _ARRAY, _MAP, _SET, _TAG, _SET_TAG, _BYTE_CHUNKS, _TEXT_CHUNKS = range(8)  # chunks: major + 4
# For each initial byte of a value with no contents to walk (a number, a simple value, an empty
# list or map): how many bytes follow it (else -1).
_LEAF = tuple(
    (0 if ib & 31 < 24 else 1 << (ib & 31) - 24 if ib & 31 < 28 else -1) if ib >> 5 in (0, 1, 7)
    else 0 if ib in (0x80, 0xA0) else -1
    for ib in range(256)
)


def scan(data: bytes, start: int = 0, *, max_items: int = MAX_CBOR_ITEMS,
         max_depth: int = MAX_CBOR_DEPTH, check_keys: bool = True) -> tuple[int, int]:
    """Walk the CBOR value at `start` without building it; return (offset after it, values in it).

    Raises `ValueError` if the value is truncated or malformed, holds more than `max_items`
    values, is nested deeper than `max_depth`, or (with `check_keys`) has map keys or set
    elements that could be made to collide in a hash table (containers, tagged values, integers
    of 2**61 and beyond). Cost: one step per value; string contents are skipped, never read.
    """
    map_kind = _MAP if check_keys else _ARRAY  # a map is then walked as a list of keys and values
    set_tag = 258 if check_keys else -1
    n = len(data)
    pos = start
    items = 0
    # each frame: [values left (-1: until a break code), kind, a key is waiting for its value]
    stack: list[list[int]] = [[1, _TOP, 0]]
    frame = stack[0]
    leaf = _LEAF
    while True:
        left = frame[0]
        if left == 0:
            stack.pop()
            if not stack:
                return pos, items
            frame = stack[-1]
            continue
        if pos >= n:
            raise ValueError("it ends in the middle of a value")
        ib = data[pos]
        pos += 1
        kind = frame[1]
        if ib == 0xFF:
            if left != -1:
                raise ValueError("a break code stands where a value was expected")
            if frame[2]:
                raise ValueError("a map ends between a key and its value")
            stack.pop()
            frame = stack[-1]
            continue
        items += 1
        if items > max_items:
            raise ValueError(f"it holds more than {max_items} values (the limit MAX_CBOR_ITEMS)")
        if left > 0:
            frame[0] = left - 1
        if kind == _MAP:
            is_key = not frame[2] if left < 0 else not left & 1
            if left < 0:
                frame[2] ^= 1
        else:
            is_key = kind == _SET
        extra = leaf[ib]
        if extra >= 0:
            if pos + extra > n:
                raise ValueError("it ends in the middle of a value")
            if is_key and (ib == 0x80 or ib == 0xA0):
                raise ValueError("a map key or set element is a list, a map or a tagged value")
            if is_key and extra == 8 and ib < 0x40 and int.from_bytes(data[pos:pos + 8], "big") >= _HASH_SAFE:
                raise ValueError("a map key or set element is an integer too large to hash safely")
            pos += extra
            continue
        major, ai = ib >> 5, ib & 31
        if ai < 24:
            arg = ai
        elif ai < 28:
            size = _ARG_BYTES[ai - 24]
            if pos + size > n:
                raise ValueError("it ends in the middle of a value")
            arg = int.from_bytes(data[pos:pos + size], "big")
            pos += size
        elif ai == 31 and 2 <= major <= 5:
            arg = -1
        else:
            raise ValueError(f"it holds the invalid initial byte 0x{ib:02x}")
        if kind >= _BYTE_CHUNKS and (major != kind - 4 or arg < 0):
            raise ValueError("an indefinite-length string holds something other than its chunks")
        if is_key and major > 3:
            raise ValueError("a map key or set element is a list, a map or a tagged value")
        if major <= 3 and arg >= 0:  # a string: skipped
            pos += arg
            if pos > n:
                raise ValueError("it ends in the middle of a value")
            continue
        if len(stack) > max_depth:
            raise ValueError(f"it is nested more than {max_depth} levels deep")
        if major <= 3:
            frame = [-1, major + 4, 0]  # an indefinite-length string: definite chunks until a break
        elif major == 6:
            frame = [1, _SET_TAG if arg == set_tag else _TAG, 0]
        elif major == 4:
            if arg > n - pos:
                raise ValueError("it ends in the middle of a value")
            frame = [arg, _SET if kind == _SET_TAG else _ARRAY, 0]
        else:
            if arg > (n - pos) // 2:
                raise ValueError("it ends in the middle of a value")
            frame = [2 * arg if arg > 0 else arg, map_kind, 0]
        stack.append(frame)


class PayloadCodec(Protocol):
    """A transformation applied to every payload's bytes: for example encryption.

    `encode` runs on every payload before it is written to the store; `decode` on every payload
    read back. Both must be pure functions of their input (decode(encode(b)) == b).
    """

    def encode(self, data: bytes) -> bytes: ...

    def decode(self, data: bytes) -> bytes: ...


#: An encoding by `cbor2.dumps` this short, with no tag byte (0xc0-0xdb) and no float byte
#: (0xf9-0xfb) anywhere in it, cannot be refused by `decode`: it is too small to nest or count
#: past the limits, holds no tags, and a map written from a dict without float keys has no
#: duplicate keys. Checking it by decoding it would cost more than writing it (floats are left to
#: the check to stay on the safe side: NaN keys are never equal).
_PLAIN_BELOW = 64
_MAYBE_REFUSED = re.compile(rb"[\xc0-\xdb\xf9-\xfb]")


class Converter:
    """Turns user values into payload bytes and back, through an optional `PayloadCodec`.

    A payload holds plain data only: None, bool, int, float, str, bytes, list, dict with str or
    int keys, and timezone-aware datetime, each exactly of its type (an IntEnum, a NamedTuple or
    an OrderedDict is not), so that what is read back is what was written. A value of another
    type is made plain by its own type (`_convert.value_to_plain`: a dataclass to a map, an
    Enum member to its value...); what cannot be is refused when written, with a `PayloadError`
    naming where it is inside the value, its type and what to pass instead (`_plain`).

    With a codec, failures written through the converter are encoded too (`encode_failures`),
    all but their type. Reading needs no such option: encoded bytes are marked as such.
    """

    def __init__(self, codec: PayloadCodec | None = None, *, encode_failures: bool = True) -> None:
        self.codec = codec
        #: whether failures written through this converter (error messages and stack traces) are
        #: encoded by the codec too (`encode_failure`, `encode_text`): on whenever there is a codec
        self.encode_failures = codec is not None and encode_failures

    def to_payload(self, value: Any, what: str) -> bytes:
        """Encode `value` (described by `what` in errors); raise `PayloadError` if impossible.

        What is written can be read back: a value that `decode` would refuse (a Decimal, a
        regular expression, too many values...) is refused here, before anything is written, and
        so is a value that would read back as something else (a tuple as a list).
        """
        try:
            plain = is_plain(value)
        except RecursionError:
            plain = False
        if not plain:  # made plain by its own type (a dataclass to a map...), else refused
            value = _made_plain(value, what)
        try:
            data = cbor2.dumps(value)
        except Exception as exc:
            raise refusal(value, what, f"{_type_name(value, exc)} is not CBOR-encodable") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadError(
                f"{what} is {len(data)} bytes encoded, over the payload limit of "
                f"{MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES)"
            )
        if len(data) > _PLAIN_BELOW or _MAYBE_REFUSED.search(data) is not None:
            try:
                decode(data, limit=MAX_PAYLOAD_BYTES, what="it")
            except DecodeError as exc:
                raise refusal(value, what, str(exc)) from None
        if self.codec is not None:
            data = self._encode(data, what)
        return data

    def from_payload(self, data: bytes, what: str = "payload") -> Any:
        """Decode payload bytes read from the store; raise `DecodeError` if impossible (saying
        so clearly if they were encoded by a codec and this converter has none, or another)."""
        if data.startswith(_ENCODED):
            return self._decode(data, what, MAX_PAYLOAD_BYTES)
        if self.codec is not None:  # written without a codec, or by a codec before the mark existed
            try:
                data = self.codec.decode(data)
            except Exception as exc:
                raise DecodeError(
                    f"{what}: the payload is not marked as encoded (written without a codec?), and the "
                    f"payload codec could not decode it: {str(exc)[:200]}"
                ) from None
            if not isinstance(data, bytes):
                raise DecodeError(f"{what}: the payload codec returned {type(data).__name__}, not bytes")
        return decode(data, limit=MAX_PAYLOAD_BYTES, what=what)

    def readable(self, data: bytes) -> Any:
        """`from_payload`, for people: what cannot be decoded is shown as such, never raised."""
        try:
            return self.from_payload(data)
        except DecodeError as exc:
            return self._unreadable() if data.startswith(_ENCODED) else f"<undecodable payload: {exc}>"

    # --- failures: error records and error texts --------------------------------------------

    def failure(self, exc: BaseException) -> dict[str, Any]:
        """The record of `exc` (`error_to_record`) as it is written (`encode_failure`)."""
        return self.encode_failure(error_to_record(exc))

    def encode_failure(self, rec: dict[str, Any]) -> dict[str, Any]:
        """An error record as it is written. With `encode_failures`, the whole record (messages,
        stacks, causes) is one value encoded by the codec; only its type, which retry policies
        match in the store, and its non-retryable flag stay in clear."""
        if not self.encode_failures:
            return rec
        out: dict[str, Any] = {"type": rec.get("type")}
        if rec.get("nr"):
            out["nr"] = True
        try:
            out["enc"] = self._encode(encode(rec), "a failure")
        except PayloadError as exc:  # never the failure in clear instead
            out["msg"] = f"<not recorded: {exc}>"[:_MAX_ERROR_TEXT]
        return out

    def decode_failure(self, rec: Any, what: str = "failure") -> Any:
        """An error record read from the store, plain (as `error_to_record` made it); raise
        `DecodeError` if it was encoded and cannot be decoded here."""
        if not (isinstance(rec, dict) and "enc" in rec):
            cause = rec.get("cause") if isinstance(rec, dict) else None
            if isinstance(cause, dict) and "enc" in cause:  # a system-made record around a user's
                return {**rec, "cause": self.decode_failure(cause, what)}
            return rec
        data = rec["enc"]
        if not isinstance(data, bytes) or not data.startswith(_ENCODED):
            raise DecodeError(f"{what}: the encoded failure is malformed")
        return self._decode(data, what, MAX_RECORD_BYTES)

    def readable_failure(self, rec: Any) -> Any:
        """`decode_failure`, for people: a record that cannot be decoded keeps its type, and its
        message says why it cannot be read."""
        try:
            return self.decode_failure(rec)
        except DecodeError:
            return {"type": rec.get("type"), "msg": self._unreadable()}

    def encode_text(self, text: str) -> str | bytes:
        """An error text (a failing workflow task's, a failed query's) as it is written: with
        `encode_failures`, encoded by the codec."""
        if not self.encode_failures:
            return text
        try:
            return self._encode(encode(text), "an error")
        except PayloadError as exc:  # never the text in clear instead
            return f"<not recorded: {exc}>"[:_MAX_ERROR_TEXT]

    def readable_text(self, value: Any) -> str | None:
        """An error text read from the store (`encode_text`), for people."""
        if not isinstance(value, bytes):
            return value  # type: ignore[no-any-return]
        try:
            text = self._decode(value, "an error", MAX_RECORD_BYTES) if value.startswith(_ENCODED) else None
        except DecodeError:
            return self._unreadable()
        return text if isinstance(text, str) else f"<undecodable error text: {value[:40]!r}>"

    # --- the codec -----------------------------------------------------------------------------

    def _encode(self, data: bytes, what: str) -> bytes:
        assert self.codec is not None
        try:
            data = self.codec.encode(data)
        except Exception as exc:
            raise PayloadError(f"{what}: the payload codec could not encode it: {exc}") from None
        if not isinstance(data, bytes):
            raise PayloadError(f"{what}: the payload codec returned {type(data).__name__}, not bytes")
        if len(data) > MAX_PAYLOAD_BYTES:
            raise PayloadError(
                f"{what} is {len(data)} bytes once encoded by the payload codec, over the payload "
                f"limit of {MAX_PAYLOAD_BYTES} bytes (MAX_PAYLOAD_BYTES)"
            )
        return _ENCODED + data

    def _decode(self, data: bytes, what: str, limit: int) -> Any:
        """The value in bytes marked as encoded by a codec (`_ENCODED`)."""
        if self.codec is None:
            raise DecodeError(f"{what}: {NO_CODEC}")
        try:
            plain = self.codec.decode(data[len(_ENCODED):])
        except Exception as exc:
            raise DecodeError(f"{what}: {WRONG_CODEC} ({type(exc).__name__}: {str(exc)[:200]})") from None
        if not isinstance(plain, bytes):
            raise DecodeError(f"{what}: {WRONG_CODEC} (the codec returned {type(plain).__name__}, not bytes)")
        try:
            return decode(plain, limit=limit, what="what the codec returned")
        except DecodeError as exc:
            raise DecodeError(f"{what}: {WRONG_CODEC} ({exc})") from None

    def _unreadable(self) -> str:
        return "<encoded: pass --codec>" if self.codec is None else "<encoded: this codec cannot decode it: wrong codec or key?>"


#: What comes before the bytes a codec made of a payload or a failure. 0xfc starts no CBOR value,
#: so a reader without the codec knows they are encoded, and says so (`NO_CODEC`).
_ENCODED = b"\xfcDC1"
NO_CODEC = "payloads are encoded: pass --codec (or codec=...)"
WRONG_CODEC = "this codec cannot decode the payload: wrong codec or key?"


def _made_plain(value: Any, what: str) -> Any:
    """`value`, which is not plain data, made plain by its own type (`_convert.value_to_plain`);
    a `PayloadError` naming the part refused if it cannot be."""
    try:
        converted = value_to_plain(value)
        plain = is_plain(converted)
    except RecursionError:
        converted, plain = value, False
    if not plain:
        raise refusal(converted, what, "it is not plain data")
    return converted


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
