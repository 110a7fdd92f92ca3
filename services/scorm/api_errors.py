"""HTTP: the one table from the scorm service's domain exceptions to the error envelope (answered by the shared
middleware, ``ServiceSpec(errors=...)``), and the unit of work a route hands its handler."""

from __future__ import annotations

from aiohttp import web

from services.scorm.context import SCORM_KEY
from services.scorm.domain import (
    InUse,
    Invalid,
    InvalidToken,
    LaunchEnded,
    NotFound,
    OffsetMismatch,
    ScormError,
    UnsupportedMediaType,
    UploadTooLarge,
)
from shared.domain_errors import Answer, ErrorTable
from shared.service import DB_KEY
from shared.uow import UnitOfWork

#: exception -> answer (shared/domain_errors.py); the error code and message come from the exception
#: (``ScormError.code``)
ERRORS: ErrorTable = {
    Invalid: Answer(400),
    InvalidToken: Answer(401),
    NotFound: Answer(404),
    InUse: Answer(409),
    OffsetMismatch: Answer(409),
    LaunchEnded: Answer(410),
    UploadTooLarge: Answer(413),
    UnsupportedMediaType: Answer(415),
    ScormError: Answer(400),
}


def unit_of_work(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=request.app[SCORM_KEY])

