"""The client's address, as the gateway uses it for sign-in lockouts, admin-token failure limits and the
``X-Forwarded-For`` it passes to the services.

Behind an ingress every request comes from the ingress's address, so the peer address alone would put every
operator in one bucket. ``X-Forwarded-For`` is honoured only when the peer is a trusted proxy
(``LEARN_TRUSTED_PROXIES``, CIDRs, default none): the header is read right to left, skipping trusted proxies,
and the first address that is not one is the client. A client that is not a trusted proxy cannot choose its
address by sending the header.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
CLIENT_IP_KEY = web.RequestKey("client_ip", str)


class TrustedProxies:
    def __init__(self, cidrs: Iterable[str] = ()):
        self.networks: tuple[Network, ...] = tuple(ipaddress.ip_network(c.strip(), strict=False)
                                                   for c in cidrs if c.strip())

    @classmethod
    def parse(cls, setting: str | None) -> TrustedProxies:
        """``"10.0.0.0/8, 192.168.1.7"`` (commas or spaces); a bad entry is a ValueError at start-up."""
        return cls((setting or "").replace(",", " ").split())

    def trusted(self, address: str | None) -> bool:
        ip = _parse(address) if self.networks else None
        return ip is not None and any(ip in network for network in self.networks)

    def client_ip(self, request: web.BaseRequest) -> str:
        """The client's address (cached on the request); ``"unknown"`` when the transport has none."""
        cached = request.get(CLIENT_IP_KEY)
        if cached is not None:
            return str(cached)
        peer = request.remote or "unknown"
        client = peer
        if self.trusted(peer):
            hops = [h.strip() for line in request.headers.getall("X-Forwarded-For", ()) for h in line.split(",")]
            for hop in reversed([h for h in hops if h]):
                client = hop
                if not self.trusted(hop):
                    break
            client = _normalised(client)
        request[CLIENT_IP_KEY] = client
        return client


TRUSTED_PROXIES_KEY = web.AppKey("trusted_proxies", TrustedProxies)
_UNTRUSTING = TrustedProxies()


def client_ip(request: web.BaseRequest) -> str:
    """The client's address by the gateway app's trusted proxies (none configured: the peer address)."""
    proxies = request.config_dict.get(TRUSTED_PROXIES_KEY, _UNTRUSTING) if isinstance(request, web.Request) \
        else _UNTRUSTING
    return proxies.client_ip(request)


def _parse(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as proxies write it: ``203.0.113.7``, ``203.0.113.7:51234``, ``[2001:db8::1]:443``,
    ``2001:db8::1``, ``fe80::1%eth0``; an IPv4-mapped IPv6 address as its IPv4 address."""
    text = (address or "").strip()
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normalised(hop: str) -> str:
    """A valid address as it prints; anything else (a forged or garbled hop) as one fixed bucket."""
    ip = _parse(hop)
    return str(ip) if ip is not None else "invalid-forwarded-for"


class FailureLimiter:
    """At most ``max_failures`` failures per key (a client IP, an account) in a sliding ``window`` of seconds."""

    MAX_CLIENTS = 50_000

    def __init__(self, max_failures: int, window: float):
        self.max_failures = max_failures
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float) -> float | None:
        """Seconds until ``client`` may try again, or None when it may try now."""
        failures = self._recent(client, now)
        if len(failures) < self.max_failures:
            return None
        return max(1.0, failures[0] + self.window - now)

    def failed(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        failures.append(now)
        self._failures[client] = failures
        self._failures.move_to_end(client)
        while len(self._failures) > self.MAX_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            failures = deque(maxlen=self.max_failures)  # the oldest of the last N decides: memory stays bounded
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
