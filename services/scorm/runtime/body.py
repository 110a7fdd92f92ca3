"""The body of a runtime commit or finish, ``{"cmi": {"<element>": "<value>", ...}}``, read without stalling.

The shared JSON reader parses a body in one call that holds the event loop (and the GIL) for as long as it takes:
about 35-120 ms for a 1 MiB body of 100,000 tiny members on a busy 2-core machine. A commit's shape is fixed,
so this reader walks it member by member with the standard library's own scanner (``scanstring``, in C), stops at
the first member past ``max_elements``, never parses a value that is not a string (the only valid kind), and
hands the loop back every few hundred members. Errors are :class:`Invalid` (the contract's ``400
invalid_argument``), worded like the shared reader's.
"""

from __future__ import annotations

import asyncio
import re
from json.decoder import JSONDecodeError, scanstring  # type: ignore[attr-defined]
from typing import Any

from aiohttp import web

from services.scorm.domain import Invalid, UnsupportedMediaType

_WS = re.compile(r"[ \t\n\r]*")
_YIELD_EVERY = 256  # members between two returns to the event loop (each member costs a few microseconds)


def _invalid_json(detail: str) -> Invalid:
    return Invalid(f"The body is not valid JSON: {detail}.")


def _check_text(value: str, what: str) -> None:
    if "\x00" in value:
        raise Invalid(f"'{what}' must not contain NUL characters.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid(f"'{what}' is not valid Unicode text (unpaired surrogate).") from None


class _Cursor:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip(self) -> str:
        """Skip white space; the next character ("" at the end)."""
        self.pos = _WS.match(self.text, self.pos).end()  # type: ignore[union-attr]
        return self.text[self.pos:self.pos + 1]

    def expect(self, char: str, what: str) -> None:
        if self.skip() != char:
            raise _invalid_json(f"expected {what} at character {self.pos}")
        self.pos += 1

    def string(self) -> str:
        if self.skip() != '"':
            raise _invalid_json(f"expected a string at character {self.pos}")
        try:
            value, self.pos = scanstring(self.text, self.pos + 1, True)
        except JSONDecodeError as exc:
            raise _invalid_json(exc.msg + f" at character {exc.pos}") from None
        return str(value)

    def literal(self, word: str) -> bool:
        if self.text.startswith(word, self.pos):
            self.pos += len(word)
            return True
        return False


async def read_runtime_body(request: web.Request, *, max_elements: int) -> dict[str, str] | None:
    """``cmi`` of the body: the element map (values unchecked beyond being strings), None when absent or null."""
    ctype = request.headers.get("Content-Type", "")
    if ctype and not ctype.split(";")[0].strip().lower().endswith(("/json", "+json")):
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = await request.read()  # bounded by the service's client_max_size (1 MiB)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_json(str(exc)) from None
    return await parse_runtime_body(text, max_elements=max_elements)


async def parse_runtime_body(text: str, *, max_elements: int) -> dict[str, str] | None:
    """``read_runtime_body`` on a decoded body."""
    if not text.strip():
        return None
    cursor = _Cursor(text)
    if cursor.skip() != "{":
        raise Invalid("The body must be a JSON object.")
    cursor.pos += 1
    cmi: dict[str, str] | None = None
    first = True
    while True:
        if cursor.skip() == "}" and first:
            cursor.pos += 1
            break
        field = cursor.string()
        cursor.expect(":", "':'")
        if field != "cmi":
            raise Invalid(f"'{field[:60]}': extra fields are not permitted.")
        cursor.skip()
        if cursor.literal("null"):
            cmi = None
        elif cursor.text.startswith("{", cursor.pos):
            cursor.pos += 1
            cmi = await _members(cursor, max_elements)
        else:
            raise Invalid("'cmi' must be an object mapping element names to string values.")
        first = False
        nxt = cursor.skip()
        cursor.pos += 1
        if nxt == "}":
            break
        if nxt != ",":
            raise _invalid_json(f"expected ',' or '}}' at character {cursor.pos - 1}")
    if cursor.skip() != "":
        raise _invalid_json(f"extra data at character {cursor.pos}")
    return cmi


async def _members(cursor: _Cursor, max_elements: int) -> dict[str, str]:
    members: dict[str, Any] = {}
    if cursor.skip() == "}":
        cursor.pos += 1
        return members
    while True:
        name = cursor.string()
        cursor.expect(":", "':'")
        if cursor.skip() != '"':
            # the only valid values are strings: nothing else is ever parsed (a 1 MiB array would stall the loop)
            raise Invalid(f"{name[:80]} must be a string")
        value = cursor.string()
        _check_text(name, "cmi")
        _check_text(value, f"cmi.{name[:80]}")
        members[name] = value
        if len(members) > max_elements:
            raise Invalid(f"cmi has more than {max_elements} elements; at most {max_elements} are accepted")
        if len(members) % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
        nxt = cursor.skip()
        cursor.pos += 1
        if nxt == "}":
            return members
        if nxt != ",":
            raise _invalid_json(f"expected ',' or '}}' at character {cursor.pos - 1}")
