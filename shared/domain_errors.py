"""Domain errors, and the one rule that turns them into the error envelope.

Below the API layer a service raises its domain errors (subclasses of :class:`DomainError`): they know nothing of
HTTP. Each service declares ONE table, ``ERRORS: ErrorTable``, from error class to :class:`Answer` (status, and
the code, message and headers when they are not the error's own), and hands it to the app factory as
``ServiceSpec(errors=ERRORS)``; :func:`domain_errors_middleware` (the innermost middleware) answers every route's
domain error through it. The gateway's admin API, whose views are methods, uses :func:`answering` instead.

An error answers as its nearest class in the table (its own, then its bases in MRO order); an error whose classes
are all absent from the table is not the API's to answer and propagates unchanged (a 500 in the envelope).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

from aiohttp import web

from shared.http import ApiError, Handler, not_found_message

__all__ = ["Answer", "DomainError", "ErrorTable", "answering", "api_error", "domain_errors_middleware",
           "not_found_message"]


class DomainError(Exception):
    """Base of every service's domain errors: ``code`` is the envelope's error code and ``message`` what the caller
    is told, unless the service's table says otherwise. A subclass may set either as a class attribute."""

    code: str = "invalid_argument"
    message: str = "The request cannot be carried out."

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message)


@dataclass(frozen=True)
class Answer:
    """How the API answers one domain error class."""

    status: int
    #: the envelope's error code; None: the error's own ``code``
    code: str | None = None
    #: the envelope's message; None: the error's own ``message``
    message: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


P = ParamSpec("P")
R = TypeVar("R")

#: a service's one table: domain error class -> how the API answers it (nearest class wins)
ErrorTable = Mapping[type[DomainError], Answer]


def api_error(table: ErrorTable, exc: DomainError) -> ApiError | None:
    """The envelope's :class:`ApiError` for ``exc`` (its nearest class in ``table``), or None if none is listed."""
    for cls in type(exc).__mro__:
        answer = table.get(cls)
        if answer is not None:
            return ApiError(answer.status, answer.code or exc.code,
                            answer.message if answer.message is not None else exc.message, answer.headers)
    return None


async def _answered(table: ErrorTable, call: Awaitable[R]) -> R:
    """``await call``, its domain errors answered through ``table`` (an unlisted one propagates unchanged)."""
    try:
        return await call
    except DomainError as exc:
        error = api_error(table, exc)
        if error is None:
            raise
        raise error from None


def domain_errors_middleware(table: ErrorTable) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Every route's domain errors, answered through ``table`` (install it innermost: the middlewares around it,
    idempotency included, see an :class:`ApiError` as if the route had raised it)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await _answered(table, handler(request))

    return middleware


def answering(table: ErrorTable) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A decorator: the view's domain errors, answered through ``table`` (for views the middleware does not wrap)."""

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(view)
        async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            return await _answered(table, view(*args, **kwargs))

        return wrapped

    return decorate
