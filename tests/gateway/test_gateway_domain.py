"""Pure rules of the gateway: key format, bearer parsing, Host → tenant, token bucket, route matching."""

from __future__ import annotations

from services.gateway import domain
from services.gateway.routes import API_TABLE, CONTENT_TABLE, PUBLIC_ROUTES


def test_generated_keys_are_well_formed_with_at_least_192_bits():
    key = domain.generate_key()
    assert key.startswith("mc_live_") and len(key) - len("mc_live_") >= 40
    assert domain.well_formed_key(key)
    assert domain.generate_key("test").startswith("mc_test_")
    assert domain.generate_key() != domain.generate_key()


def test_malformed_keys_are_recognised():
    for bad in ("", "mc_live_", "mc_live_short", "mc_prod_" + "a" * 43, "mc_live_" + "a" * 42 + "!", "x" * 60):
        assert not domain.well_formed_key(bad), bad


def test_the_hash_is_keyed():
    assert domain.hash_key(b"one", "mc_live_x") != domain.hash_key(b"two", "mc_live_x")
    assert len(domain.hash_key(b"one", "mc_live_x")) == 64


def test_bearer_tokens_are_read_from_the_bearer_scheme_only():
    assert domain.bearer_token("Bearer abc") == "abc"
    assert domain.bearer_token("bearer  abc ") == "abc"
    assert domain.bearer_token("Basic abc") is None
    assert domain.bearer_token("Bearer") is None
    assert domain.bearer_token(None) is None


def test_the_host_names_a_tenant_only_under_the_base_domain():
    assert domain.host_slug("acme.mobieus.io", "mobieus.io") == "acme"
    assert domain.host_slug("ACME.mobieus.io:443", "mobieus.io") == "acme"
    assert domain.host_slug("mobieus.io", "mobieus.io") is None
    assert domain.host_slug("a.b.mobieus.io", "mobieus.io") is None
    assert domain.host_slug("localhost:8080", "localhost") is None
    assert domain.host_slug("127.0.0.1:8080", "localhost") is None
    assert domain.host_slug("acme.localhost:8080", "localhost") == "acme"


def test_the_token_bucket_allows_a_burst_then_refills_at_the_rate():
    bucket = domain.TokenBucket.full(rate=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.seconds_until_token() == 1
    assert bucket.take(0.5)
    assert not bucket.take(0.5)
    assert bucket.take(10.0) and bucket.remaining == 2  # never more than the burst


def test_only_paid_plans_use_the_api():
    assert [p for p in domain.PLANS if domain.plan_allows_api(p)] == ["pro", "creator_plus", "sovereign"]


def test_static_segments_win_over_parameters_with_backtracking():
    assert API_TABLE.match("/api/v1/learn/certificates/verify/abc").methods["GET"].path.endswith("verify/{vid}")
    assert API_TABLE.match("/api/v1/learn/certificates/verify").methods["GET"].path.endswith("certificates/{id}")


def test_tail_parameters_take_the_rest_of_the_path():
    assert CONTENT_TABLE.match("/learn/content/tok/a/b/c.js") is not None
    assert CONTENT_TABLE.match("/learn/content/tok/a/%2e%2e/c.js") is None
    assert CONTENT_TABLE.match("/learn/content/tok/a%2Fb") is None


def test_every_table_route_is_matched_by_its_own_pattern():
    for route in PUBLIC_ROUTES:
        path = route.path.replace("{vid}", "v" * 40).replace("{id}", "1").replace("{mid}", "2").replace("{lid}", "3")
        match = API_TABLE.match(path)
        assert match is not None and match.methods[route.method] is route
