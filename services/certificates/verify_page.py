"""The public verification page ``GET /verify/{vid}``: no API key, no tenant headers.

The gateway forwards it with only the internal credential; the tenant is the certificate's (verification ids
are unique across tenants). Rendered with Jinja2 autoescaping; no script at all; the one inline stylesheet is
allowed by its hash in the ``Content-Security-Policy``. The revocation reason is not shown here: it can be an
internal matter, and the page is public.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from services.certificates import handlers
from services.certificates.api.common import uow_of
from services.certificates.domain import CertificateNotFound, status_of
from services.certificates.pdf.spec import format_date, format_hours
from shared.db import as_utc
from shared.http import request_id_of

_HERE = Path(__file__).parent
_CSS = (_HERE / "verify_page.css").read_text(encoding="utf-8")
_CSS_HASH = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_CSS_HASH}'; img-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_environment = Environment(loader=FileSystemLoader(_HERE), autoescape=select_autoescape(["html"]),
                           enable_async=False)
_page = _environment.get_template("verify_page.html")

#: status -> (mark, label in the status box, the page's title)
_STATUS = {
    "valid": ("✓", "Valid certificate", "Valid certificate"),
    "revoked": ("✕", "Revoked", "Revoked certificate"),
    "expired": ("!", "Expired", "Expired certificate"),
}


def _iso(moment: datetime | None) -> str:
    return as_utc(moment).isoformat() if moment is not None else ""


def page_context(row: Any, issuer: str, now: datetime) -> dict[str, Any]:
    status = status_of(row.revoked_at, row.expires_at, now)
    issued, expires, revoked = as_utc(row.issued_at), as_utc(row.expires_at), as_utc(row.revoked_at)
    detail = {
        "valid": f"Issued by {issuer}; not revoked" + (f", valid until {format_date(expires)}." if expires else "."),
        "revoked": f"{issuer} revoked this certificate on {format_date(revoked)}." if revoked else "",
        "expired": f"This certificate expired on {format_date(expires)}." if expires else "",
    }[status]
    hours = format_hours(Decimal(row.credit_hours)) if row.credit_hours is not None else ""
    credit = " ".join(part for part in (hours, row.credit_kind or ("hours" if hours else "")) if part)
    mark, label, title = _STATUS[status]
    return {
        "cert": row, "issuer": issuer, "status": status, "status_mark": mark, "status_label": label,
        "page_title": title,
        "status_detail": detail, "credit": credit,
        "issued_on": format_date(issued) if issued else "", "issued_iso": _iso(issued),
        "expires_on": format_date(expires) if expires else "", "expires_iso": _iso(expires),
        "revoked_on": format_date(revoked) if revoked else "", "revoked_iso": _iso(revoked),
        "checked_at": now.strftime("%Y-%m-%d %H:%M"),
    }


def render_page(context: dict[str, Any] | None) -> str:
    return _page.render(css=Markup(_CSS), **(context or {}))  # noqa: S704 - our own stylesheet, hashed in the CSP


async def verification_page(request: web.Request) -> web.Response:
    now = datetime.now(UTC)
    row: Any = None
    issuer = ""
    try:
        row, issuer = await handlers.verification(uow_of(request), request.match_info["vid"])
    except CertificateNotFound:
        pass
    body = render_page(page_context(row, issuer, now) if row is not None else None)
    return web.Response(
        text=body, status=200 if row is not None else 404, content_type="text/html", charset="utf-8",
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
            "X-Request-Id": request_id_of(request),
        },
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/verify/{vid}", verification_page)
