"""What every certificates route shares: path prefixes, the runtime key, units of work, and the one table that
maps domain errors (services/certificates/domain.py) to the error envelope."""

from __future__ import annotations

from aiohttp import web

from services.certificates.domain import (
    AlreadyRevoked,
    CertificateBusy,
    CertificateNotFound,
    RenderUnavailable,
    TemplateNotFound,
)
from services.certificates.handlers import Runtime
from shared.bus.envelope import Origin
from shared.domain_errors import Answer, ErrorTable
from shared.http import RequestContext
from shared.service import DB_KEY, SETTINGS_KEY
from shared.uow import UnitOfWork

ADMIN = "/admin/v1"
API = "/api/v1/learn"

RUNTIME_KEY = web.AppKey("certificates_runtime", Runtime)

_RETRY = {"Retry-After": "1"}
#: domain error -> answer (shared/domain_errors.py); the message is the error's own
ERRORS: ErrorTable = {
    CertificateNotFound: Answer(404, "certificate_not_found"),
    TemplateNotFound: Answer(404, "template_not_found"),
    AlreadyRevoked: Answer(400, "invalid_argument"),
    # Nothing was written: the same request (with the same Idempotency-Key) can be sent again. Never a 500 for
    # a failure the client can do nothing about but retry.
    RenderUnavailable: Answer(503, "service_unavailable", headers=_RETRY),
    CertificateBusy: Answer(503, "service_unavailable", headers=_RETRY),
}


def uow_of(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=request.app[RUNTIME_KEY])


def origin_of(ctx: RequestContext) -> Origin:
    return Origin.of_request(ctx)


def public_url(request: web.Request) -> str:
    return request.app[SETTINGS_KEY].common.public_url
