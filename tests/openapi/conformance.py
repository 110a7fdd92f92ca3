"""Response conformance: every answer of the real system that a test sees is checked against the OpenAPI document.

A pytest plugin (registered in tests/conftest.py). While a test under ``tests/e2e``, ``tests/client`` or
``tests/openapi`` runs, each aiohttp client response whose path and method are an operation of the document is
recorded; at the test's teardown each is checked, and any mismatch fails that test:

- the status is declared for the operation (``default`` does not count: it is there for clients, not as a pass);
- the media type is declared; a JSON body validates against the declared schema, *strictly*: an object may not
  carry a property the schema does not name (the document itself leaves objects open, so that clients tolerate
  additive changes; the services may not send an undeclared field);
- every API header the answer carries (``components/headers``) is declared for that answer, and its value fits.

Cheap: no extra requests, one schema check per answer. ``LEARN_OPENAPI_RECORD=<file>`` also writes the first JSON
answer of each operation and status to ``<file>`` (where shared/api/examples.json comes from).
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from services.gateway.openapi import build_document

_ENABLED = ("tests/e2e/", "tests/client/", "tests/openapi/")
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes | None  # JSON answers only


def _strict(node: Any) -> Any:
    """A copy of a schema where every object with ``properties`` allows no other property."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def _group(match: re.Match[str]) -> str:
    name = match.group(1)
    return f"(?P<{name}>.+)" if name == "path" else f"(?P<{name}>[^/]+)"


@dataclass
class Operation:
    operation_id: str
    pattern: re.Pattern[str]
    spec: dict[str, Any]


class Checker:
    """Checks one answer against the document; ``check`` returns the mismatches, as readable lines."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.components = _strict(copy.deepcopy(document["components"]))
        self.api_headers = {name.lower(): name for name in document["components"]["headers"]}
        self.operations: dict[str, list[Operation]] = {}
        for path, item in document["paths"].items():
            regex = "^" + re.sub(r"\\\{(\w+)\\\}", _group, re.escape(path)) + "$"
            for method, spec in item.items():
                self.operations.setdefault(method.upper(), []).append(
                    Operation(spec["operationId"], re.compile(regex), spec))
        self._validators: dict[str, Draft202012Validator] = {}

    def operation(self, method: str, path: str) -> Operation | None:
        # static segments win over parameters (``/certificates/verify/{vid}`` before ``/certificates/{id}/...``)
        found = [op for op in self.operations.get(method, []) if op.pattern.match(path)]
        found.sort(key=lambda op: op.pattern.pattern.count("(?P<"))
        return found[0] if found else None

    def _validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._validators:
            root = {**_strict(schema), "components": self.components}
            self._validators[key] = Draft202012Validator(root, format_checker=FormatChecker())
        return self._validators[key]

    def check(self, ex: Exchange) -> list[str]:
        op = self.operation(ex.method, ex.path)
        if op is None:
            return []
        where = f"{ex.method} {ex.path} -> {ex.status} ({op.operation_id})"
        response = op.spec["responses"].get(str(ex.status))
        if response is None:
            return [f"{where}: status {ex.status} is not declared"]
        problems: list[str] = []
        content = response.get("content", {})
        media = ex.content_type or ""
        declared = content.get(media) or content.get("*/*")
        if content and declared is None:
            problems.append(f"{where}: media type {media!r} is not declared ({', '.join(content)})")
        elif declared is not None and media == "application/json":
            try:
                body = json.loads(ex.body or b"")
            except ValueError:
                problems.append(f"{where}: the body is not JSON")
            else:
                for error in self._validator(declared["schema"]).iter_errors(body):
                    at = "/".join(str(p) for p in error.absolute_path)
                    problems.append(f"{where}: body at /{at}: {error.message[:300]}")
        declared_headers = {name.lower(): spec for name, spec in response.get("headers", {}).items()}
        for name, value in ex.headers.items():
            lower = name.lower()
            if lower not in self.api_headers:
                continue
            if lower not in declared_headers:
                problems.append(f"{where}: header {name} is sent but not declared for {ex.status}")
                continue
            spec = self.document["components"]["headers"][self.api_headers[lower]]
            schema = spec["schema"]
            candidate: Any = value
            if schema.get("type") == "integer":
                candidate = int(value) if value.isdigit() else value
            problems += [f"{where}: header {name}: {e.message}" for e in self._validator(schema).iter_errors(candidate)]
        if "x-request-id" in declared_headers and "x-request-id" not in {k.lower() for k in ex.headers}:
            problems.append(f"{where}: no X-Request-Id header")
        return problems


@dataclass
class Recorder:
    active: bool = False
    exchanges: list[Exchange] = field(default_factory=list)
    validated: int = 0
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def record(self, method: str, resp: aiohttp.ClientResponse) -> None:
        media = resp.content_type
        body = await resp.read() if media == "application/json" else None
        self.exchanges.append(Exchange(method.upper(), urlsplit(str(resp.url)).path, resp.status, media,
                                       dict(resp.headers), body))

    async def record_httpx(self, resp: Any) -> None:
        """An httpx response hook (the generated Python client): ``httpx_args={"event_hooks": {"response":
        [RECORDER.record_httpx]}}``."""
        if not self.active:
            return
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        body = await resp.aread() if media == "application/json" else None
        self.exchanges.append(Exchange(resp.request.method.upper(), resp.request.url.path, resp.status_code, media,
                                       dict(resp.headers), body))

    def take(self) -> list[Exchange]:
        taken, self.exchanges = self.exchanges, []
        return taken


RECORDER = Recorder()
_CHECKER: Checker | None = None


def checker() -> Checker:
    global _CHECKER
    if _CHECKER is None:
        _CHECKER = Checker(build_document())
    return _CHECKER


def _patch_aiohttp() -> None:
    original = aiohttp.ClientSession._request
    if getattr(original, "_conformance", False):
        return

    async def _request(self: aiohttp.ClientSession, method: str, str_or_url: Any, **kwargs: Any) -> Any:
        resp = await original(self, method, str_or_url, **kwargs)
        if RECORDER.active:
            await RECORDER.record(method, resp)
        return resp

    _request._conformance = True  # type: ignore[attr-defined]
    aiohttp.ClientSession._request = _request  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _patch_aiohttp()


def _remember_example(ex: Exchange) -> None:
    op = checker().operation(ex.method, ex.path)
    if op is None or ex.body is None:
        return
    per_op = RECORDER.examples.setdefault(op.operation_id, {})
    per_op.setdefault(str(ex.status), json.loads(ex.body))


def check_all(exchanges: list[Exchange]) -> Iterator[str]:
    for ex in exchanges:
        problems = checker().check(ex)
        RECORDER.validated += checker().operation(ex.method, ex.path) is not None
        if os.environ.get("LEARN_OPENAPI_RECORD") and not problems:
            _remember_example(ex)
        yield from problems


@pytest.fixture(autouse=True)
def _openapi_conformance(request: pytest.FixtureRequest) -> Iterator[None]:
    where = Path(str(request.node.path)).resolve().relative_to(_REPO).as_posix()
    if not where.startswith(_ENABLED):
        yield
        return
    RECORDER.take()
    RECORDER.active = True
    try:
        yield
    finally:
        RECORDER.active = False
    mismatches = list(check_all(RECORDER.take()))
    if mismatches:
        pytest.fail("answers that do not conform to the OpenAPI document:\n" + "\n".join(mismatches[:50]),
                    pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("LEARN_OPENAPI_RECORD")
    if target and RECORDER.examples:
        Path(target).write_text(json.dumps(RECORDER.examples, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if RECORDER.validated:
        terminalreporter.write_line(f"openapi conformance: {RECORDER.validated} answers checked against the document")
