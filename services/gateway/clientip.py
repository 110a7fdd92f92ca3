"""The client's address: its code is in ``proxy.py`` (``TrustedProxies``, ``client_ip``), the failure limit per
address in ``domain.py`` (``FailureLimiter``), so that the request pipeline's path crosses fewer files
(docs/architecture.md, "Measured"). This module only names them for the admin UI's pages and ``staff.py``, which
import them from here; new code imports them from ``proxy`` and ``domain``."""

from __future__ import annotations

from services.gateway.domain import FailureLimiter
from services.gateway.proxy import CLIENT_IP_KEY, TRUSTED_PROXIES_KEY, TrustedProxies, client_ip

__all__ = ["CLIENT_IP_KEY", "TRUSTED_PROXIES_KEY", "FailureLimiter", "TrustedProxies", "client_ip"]
