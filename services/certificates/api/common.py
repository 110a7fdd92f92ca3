"""What every certificates route shares: path prefixes, the runtime key, units of work, and the one table that
maps domain errors (services/certificates/domain.py) to the error envelope."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from aiohttp import web

from services.certificates.domain import (
    AlreadyRevoked,
    CertificateBusy,
    CertificateNotFound,
    CertificatesError,
    RenderUnavailable,
    TemplateNotFound,
)
from services.certificates.handlers import Runtime
from shared.bus.envelope import Origin
from shared.http import ApiError, RequestContext
from shared.service import DB_KEY, SETTINGS_KEY
from shared.uow import UnitOfWork

ADMIN = "/admin/v1"
API = "/api/v1/learn"

RUNTIME_KEY = web.AppKey("certificates_runtime", Runtime)

_RETRY = {"Retry-After": "1"}
#: domain error -> (status, code, headers); the message is the error's own
ERRORS: dict[type[CertificatesError], tuple[int, str, dict[str, str]]] = {
    CertificateNotFound: (404, "certificate_not_found", {}),
    TemplateNotFound: (404, "template_not_found", {}),
    AlreadyRevoked: (400, "invalid_argument", {}),
    # Nothing was written: the same request (with the same Idempotency-Key) can be sent again. Never a 500 for
    # a failure the client can do nothing about but retry.
    RenderUnavailable: (503, "service_unavailable", _RETRY),
    CertificateBusy: (503, "service_unavailable", _RETRY),
}

Route = TypeVar("Route", bound=Callable[..., Awaitable[web.StreamResponse]])


def answers_domain_errors(route: Route) -> Route:
    """``route``, with the domain errors of :data:`ERRORS` answered in the error envelope."""

    @functools.wraps(route)
    async def wrapper(request: web.Request, *args: Any, **kwargs: Any) -> web.StreamResponse:
        try:
            return await route(request, *args, **kwargs)
        except CertificatesError as exc:
            entry = ERRORS.get(type(exc))
            if entry is None:
                raise
            status, code, headers = entry
            raise ApiError(status, code, exc.message, headers) from None

    return cast(Route, wrapper)


def uow_of(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=request.app[RUNTIME_KEY])


def origin_of(ctx: RequestContext) -> Origin:
    return Origin.of_request(ctx)


def public_url(request: web.Request) -> str:
    return request.app[SETTINGS_KEY].common.public_url
