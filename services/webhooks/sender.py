"""The HTTP side of a delivery: one signed POST, with the safety rules of docs/webhooks.md.

- the destination is checked when the connection is made: a name is resolved here and every address it gives
  must be public (or in ``allowed_networks``), so a DNS answer that changed since the endpoint was saved
  (rebinding) is refused too; a literal address is checked before the request;
- redirects are not followed (a 3xx is a failed attempt);
- at most ``response_capture`` bytes of the response are read, and each attempt has a total timeout.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from services.webhooks import domain
from services.webhooks.config import WebhooksSettings

USER_AGENT = "mobieusLearn-Webhooks/1.0"


class RefusedDestination(OSError):
    """Every address of the endpoint's host is one this service does not call."""


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then drops refused addresses (none left: :class:`RefusedDestination`)."""

    def __init__(self, networks: Sequence[domain.IPNetwork]):
        self.networks = tuple(networks)
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if domain.refused(ipaddress.ip_address(r["host"]), self.networks) is None]
        if not allowed:
            reasons = {domain.refused(ipaddress.ip_address(r["host"]), self.networks) for r in found}
            raise RefusedDestination(f"{host} resolves to {' and '.join(sorted(r or '' for r in reasons))} "
                                     "address only")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


async def refused_name(url: str, networks: Sequence[domain.IPNetwork]) -> str | None:
    """Why the URL's host name may not be called now (it resolves to refused addresses only), or None. A name
    that does not resolve now is not refused here: it is checked at each delivery."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
        return None  # literal: domain.check_url decided
    except ValueError:
        pass
    resolver = GuardedResolver(networks)
    try:
        await resolver.resolve(host, 443, socket.AF_UNSPEC)
        return None
    except RefusedDestination as exc:
        return f"'url': {exc}, which this service does not call."
    except OSError:
        return None
    finally:
        await resolver.close()


class Sender:
    """One pooled HTTP client for every delivery of this process."""

    def __init__(self, settings: WebhooksSettings):
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        context = ssl.create_default_context()
        if self.settings.ca_file:
            context.load_verify_locations(self.settings.ca_file)
        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.settings.networks), ssl=context,
                                         limit=self.settings.concurrency, use_dns_cache=False)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=self.settings.timeout))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> tuple[int | None, str | None, str]:
        """``(status, error, first bytes of the response)``; status None when no response came."""
        assert self._session is not None
        try:
            domain.check_url(url, allow_http=self.settings.allow_http, networks=self.settings.networks)
        except domain.WebhooksError as exc:
            return None, f"refused: {exc.message}", ""
        try:
            async with self._session.post(url, data=body, headers={**headers, "User-Agent": USER_AGENT,
                                                                   "Content-Type": "application/json"},
                                          allow_redirects=False) as resp:
                captured = await _read_capped(resp, self.settings.response_capture)
                return resp.status, None, captured
        except RefusedDestination as exc:
            return None, f"refused: {exc}", ""
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedDestination):
                return None, f"refused: {exc.os_error}", ""
            return None, _short(exc), ""
        except TimeoutError:
            return None, f"timeout after {self.settings.timeout:g} s", ""
        except (aiohttp.ClientError, OSError, ssl.SSLError, ValueError) as exc:
            return None, _short(exc), ""


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        chunk = await resp.content.read(cap - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if not resp.content.at_eof():
        resp.close()  # the rest is never read: drop the connection
    return b"".join(chunks).decode("utf-8", errors="replace")


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
