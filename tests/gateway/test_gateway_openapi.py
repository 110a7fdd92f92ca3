"""The OpenAPI 3.1 document: valid, served without a key, and covering every route of the table."""

from __future__ import annotations

from openapi_spec_validator import validate

from services.gateway.routes import PASS_THROUGH_ROUTES, PUBLIC_ROUTES


async def test_the_document_is_valid_openapi_31_and_covers_every_route_with_its_scope(gw):
    resp = await gw.client.get("/api/v1/learn/openapi.json")
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"].startswith("3.1")
    validate(document)
    missing = []
    for route in (*PUBLIC_ROUTES, *PASS_THROUGH_ROUTES):
        operation = document["paths"].get(route.path.replace("+}", "}"), {}).get(route.method.lower())
        if operation is None:
            missing.append((route.method, route.path))
            continue
        expected_security = [{"ApiKey": [route.scope]}] if route.scope else []
        assert operation["security"] == expected_security, route.path
    assert missing == []


def test_list_routes_document_the_envelope_with_next_cursor():
    from services.gateway.openapi import build_document

    document = build_document()

    def deref(node):  # the envelopes and the error body are named components (#/components/schemas/...)
        return document["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    listing = document["paths"]["/api/v1/learn/courses"]["get"]["responses"]["200"]
    schema = deref(listing["content"]["application/json"]["schema"])
    assert schema["required"] == ["data", "next_cursor", "request_id"]
    assert schema["properties"]["data"]["type"] == "array"
    error = document["components"]["schemas"]["Error"]
    assert deref(error["properties"]["error"])["required"] == ["code", "message", "request_id"]


def test_the_published_copy_in_docs_is_current():
    import json
    from pathlib import Path

    from services.gateway.openapi import build_document

    published = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
    assert json.loads(published.read_text()) == json.loads(json.dumps(build_document())), (
        "regenerate: python -m services.gateway.openapi > docs/openapi.json")
