"""The client's address behind an ingress (issue 15): ``X-Forwarded-For`` is believed only from trusted proxies
(``LEARN_TRUSTED_PROXIES``), sign-in failures are counted per address and per account, and wrong admin tokens
from one address are limited with 429 + ``Retry-After``.

The test client connects from 127.0.0.1, so ``trusted_proxies="127.0.0.1/32"`` makes it an ingress.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from services.gateway.config import GatewaySettings
from services.gateway.domain import FailureLimiter
from services.gateway.proxy import TrustedProxies
from services.gateway.ui import UI_KEY
from tests.gateway.conftest import ADMIN_TOKEN, Harness


def _request(peer: str, forwarded: list[str] | None = None) -> Any:
    headers = [("X-Forwarded-For", value) for value in (forwarded or [])]
    transport = type("T", (), {"get_extra_info": lambda self, name, default=None:
                               (peer, 1234) if name == "peername" else default})()
    return make_mocked_request("GET", "/", headers=headers, transport=transport)


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # not a trusted proxy: its header is ignored
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1, 10.0.0.7"], "198.51.100.1"),  # two trusted hops
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # a client-written first hop is not believed
    ("10.0.0.5", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # several header lines are one list
    ("10.0.0.5", [], "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.1:4711"], "198.51.100.1"),
    ("10.0.0.5", ["198.51.100.1, 10.0.0.7:443"], "198.51.100.1"),  # a trusted hop written with its port
    ("10.0.0.5", ["[2001:db8::1]:443"], "2001:db8::1"),
    ("10.0.0.5", ["[2001:db8::1]"], "2001:db8::1"),
    ("10.0.0.5", ["not-an-address"], "invalid-forwarded-for"),
    ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
])
def test_forwarded_for_is_read_right_to_left_through_trusted_proxies_only(peer: str, forwarded: list[str],
                                                                           expected: str) -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8, 192.168.1.7")
    assert proxies.client_ip(_request(peer, forwarded)) == expected


def test_no_trusted_proxies_by_default_and_a_bad_cidr_stops_the_start() -> None:
    assert TrustedProxies.parse("").client_ip(_request("10.0.0.5", ["198.51.100.1"])) == "10.0.0.5"
    with pytest.raises(ValueError):
        GatewaySettings(trusted_proxies="10.0.0.0/33")


def test_the_failure_limiter_keeps_only_the_last_failures_of_a_key() -> None:
    limiter = FailureLimiter(max_failures=3, window=100)
    for t in range(50):
        limiter.failed("k", float(t))
    assert len(limiter._failures["k"]) == 3  # bounded memory under a flood
    assert limiter.retry_after("k", 50.0) == pytest.approx(97.0)


# --- the admin API's bearer -----------------------------------------------------------------------------------


async def _admin(gw: Harness, token: str | None, client: str | None = None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if client:
        headers["X-Forwarded-For"] = client
    return await gw.client.get("/admin/api/v1/tenants", headers=headers)


async def test_wrong_admin_tokens_from_one_address_get_429_with_retry_after(make_gateway) -> None:
    gw = await make_gateway(admin_auth_max_failures=3, admin_auth_window=600)
    for _ in range(5):  # no token at all guesses nothing: never counted
        assert (await _admin(gw, None)).status == 401
    assert (await _admin(gw, ADMIN_TOKEN)).status == 200
    for _ in range(3):
        resp = await _admin(gw, "wrong-token")
        assert resp.status == 401
    for token in ("wrong-token", ADMIN_TOKEN):  # now even the right token waits: guessing gains nothing
        resp = await _admin(gw, token)
        body = await resp.json()
        assert resp.status == 429 and body["error"]["code"] == "rate_limited", body
        assert 1 <= int(resp.headers["Retry-After"]) <= 601
    # Not behind a trusted proxy: a forged X-Forwarded-For does not buy a fresh address.
    assert (await _admin(gw, ADMIN_TOKEN, client="198.51.100.77")).status == 429


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_admin_token_budget(make_gateway) -> None:
    gw = await make_gateway(admin_auth_max_failures=2, admin_auth_window=600, trusted_proxies="127.0.0.1/32")
    for _ in range(2):
        assert (await _admin(gw, "wrong", client="198.51.100.1")).status == 401
    assert (await _admin(gw, ADMIN_TOKEN, client="198.51.100.1")).status == 429
    assert (await _admin(gw, ADMIN_TOKEN, client="198.51.100.2")).status == 200  # another operator, same ingress
    assert (await _admin(gw, ADMIN_TOKEN)).status == 200  # the ingress itself


async def test_services_get_the_forwarded_client_from_a_trusted_proxy_and_the_peer_otherwise(make_gateway) -> None:
    for trusted, expected in (("127.0.0.1/32", "198.51.100.9"), ("", "127.0.0.1")):
        gw = await make_gateway(trusted_proxies=trusted)
        resp = await gw.client.get("/verify/" + "v" * 40, headers={"X-Forwarded-For": "198.51.100.9"})
        assert resp.status == 200
        assert gw.echoes["certificates"].seen[-1]["headers"]["X-Forwarded-For"] == expected


# --- the admin UI's sign-in -----------------------------------------------------------------------------------


async def _sign_in(session: aiohttp.ClientSession, token: str, client: str) -> aiohttp.ClientResponse:
    headers = {"X-Forwarded-For": client}
    page = await (await session.get("/admin/login", headers=headers)).text()
    login_token = re.search(r'name="login_token" value="([^"]+)"', page)
    assert login_token, page
    return await session.post("/admin/login", data={"login_token": login_token.group(1), "token": token},
                              headers=headers, allow_redirects=False)


async def test_behind_an_ingress_one_operators_typos_do_not_lock_out_the_others(make_gateway) -> None:
    gw = await make_gateway(trusted_proxies="127.0.0.1/32")
    ui = gw.app[UI_KEY]
    ui.limiter = ui.limiter.fresh(max_failures=3, window=600)
    ui.account_limiter = ui.account_limiter.fresh(max_failures=10, window=600)
    base = gw.client.make_url("/")
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for _ in range(3):
            assert (await _sign_in(session, "typo", "198.51.100.1")).status == 401
        resp = await _sign_in(session, ADMIN_TOKEN, "198.51.100.1")
        assert resp.status == 429 and "from your address" in await resp.text()
        assert (await _sign_in(session, ADMIN_TOKEN, "198.51.100.2")).status == 303  # the next operator signs in


async def test_without_a_trusted_proxy_a_forged_forwarded_for_does_not_escape_the_lockout(make_gateway) -> None:
    gw = await make_gateway()
    ui = gw.app[UI_KEY]
    ui.limiter = ui.limiter.fresh(max_failures=3, window=600)
    base = gw.client.make_url("/")
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for n in range(3):
            assert (await _sign_in(session, "guess", f"198.51.100.{n}")).status == 401
        assert (await _sign_in(session, ADMIN_TOKEN, "198.51.100.200")).status == 429


async def test_failures_from_many_addresses_hit_the_account_limit(make_gateway) -> None:
    gw = await make_gateway(trusted_proxies="127.0.0.1/32")
    ui = gw.app[UI_KEY]
    ui.limiter = ui.limiter.fresh(max_failures=3, window=600)
    ui.account_limiter = ui.account_limiter.fresh(max_failures=4, window=600)
    base = gw.client.make_url("/")
    async with aiohttp.ClientSession(base_url=base, cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for n in range(4):  # one guess from each of four addresses: no address is over its own limit
            assert (await _sign_in(session, "guess", f"203.0.113.{n}")).status == 401
        resp = await _sign_in(session, ADMIN_TOKEN, "203.0.113.99")
        assert resp.status == 429 and "for the admin account" in await resp.text()
        assert int(resp.headers["Retry-After"]) > 0
