"""Staff mail (invitations, password resets): SMTP when ``LEARN_SMTP_URL`` is set (ADR 0021)."""

from __future__ import annotations

import asyncio
import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import structlog

log = structlog.get_logger("gateway.mail")


class MailError(Exception):
    pass


class Mailer:
    def __init__(self, smtp_url: str, sender: str, timeout: float = 10.0):
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("LEARN_SMTP_URL must look like smtp://host:port or smtps://host:port")
        self.tls = parts.scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or (465 if self.tls else 25)
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.sender = sender
        self.timeout = timeout

    def _send(self, message: EmailMessage) -> None:
        cls = smtplib.SMTP_SSL if self.tls else smtplib.SMTP
        with cls(self.host, self.port, timeout=self.timeout) as smtp:
            if self.user:
                smtp.login(self.user, self.password or "")
            smtp.send_message(message)

    async def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, to, subject
        message.set_content(text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("staff_mail_failed", error=repr(exc))
            raise MailError(str(exc)) from None


def staff_link_url(public_url: str, base_domain: str, slug: str, token: str) -> str:
    """The link on the tenant's own host: ``<scheme>://<slug>.<base>[:port]/admin/accept?token=...``."""
    parts = urlsplit(public_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme or 'https'}://{slug}.{base_domain}{port}/admin/accept?token={token}"
