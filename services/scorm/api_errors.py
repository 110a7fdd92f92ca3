"""HTTP: the one table from the scorm service's domain exceptions to the error envelope, and the unit of work a
route hands its handler."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

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
from shared.http import ApiError
from shared.service import DB_KEY
from shared.uow import UnitOfWork

#: exception -> HTTP status; the error code and message come from the exception (``ScormError.code``)
ERRORS: dict[type[ScormError], int] = {
    Invalid: 400,
    InvalidToken: 401,
    NotFound: 404,
    InUse: 409,
    OffsetMismatch: 409,
    LaunchEnded: 410,
    UploadTooLarge: 413,
    UnsupportedMediaType: 415,
    ScormError: 400,
}


def api_error(exc: ScormError) -> ApiError:
    """The error envelope's ApiError for a domain exception (its nearest class in ``ERRORS``)."""
    status = next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)
    return ApiError(status, exc.code, exc.message)


@web.middleware
async def scorm_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every route's domain exceptions through :data:`ERRORS` (innermost middleware)."""
    try:
        return await handler(request)
    except ScormError as exc:
        raise api_error(exc) from None


def unit_of_work(request: web.Request) -> UnitOfWork:
    return UnitOfWork(request.app[DB_KEY], deps=request.app[SCORM_KEY])


def setup(app: web.Application) -> None:
    app.middlewares.append(scorm_errors)
