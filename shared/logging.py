"""structlog configured for one JSON object per line, with request/tenant/event context from contextvars."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

__all__ = ["bind_contextvars", "bound_contextvars", "clear_contextvars", "configure_logging", "get_logger",
           "redact", "redact_secrets"]

_configured = False


# Credentials that travel in URLs and must never reach a log line: the learner's runtime token (it is the path
# segment after /learn/player|content|runtime/, on any origin) and API keys. Verification ids are public.
_SECRET_IN_TEXT = re.compile(
    r"(?P<keep>/learn/(?:player|content|runtime)/)(?!\{)[^/?#\s\"']+"
    r"|\br[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\.[A-Za-z0-9_-]{16,}"
    r"|\bmc_(?:live|test)_[A-Za-z0-9_-]{8,}"
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every runtime token and API key replaced by ``[redacted]``."""
    return _SECRET_IN_TEXT.sub(lambda m: (m.group("keep") or "") + REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, BaseException):
        return redact(repr(value))
    return value


def redact_secrets(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor, after exception formatting: no field of any line (paths, URLs in ``repr`` of client
    errors, tracebacks, stdlib records) carries a runtime token or an API key."""
    for key, value in event_dict.items():
        event_dict[key] = _redact_value(value)
    return event_dict


def configure_logging(service: str, level: str = "info", json: bool = True) -> None:
    """Configure structlog and the stdlib root logger once per process (later calls only rebind ``service``)."""
    global _configured
    bind_contextvars(service=service)
    if _configured:
        return
    _configured = True
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Third-party libraries log through the stdlib; route them into the same JSON stream.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redact_secrets,
                renderer,
            ],
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)
