"""The seed page's examples, done as written, through the gateway with every service its own process."""

from __future__ import annotations


async def test_enroll_on_purchase_flow_as_written(cluster):
    key = await cluster.tenant_with_key("acme")
    status, body = await cluster.admin("PUT", "/tenants/acme/users/123",
                                       json={"name": "Ada Buyer", "email": "ada@example.com"})
    assert status in (200, 201), body

    # 1. Create a course
    status, body = await cluster.api(key, "POST", "/courses", json={
        "slug": "intro-to-mobieus", "title": "Intro to Mobieus", "completion_rule": "all_required",
        "credit_hours": 2.5, "credit_kind": "CEU"})
    assert status in (200, 201), body
    course = body["data"]
    assert course["slug"] == "intro-to-mobieus"
    assert course["credit"]["hours"] == 2.5 and course["credit"]["kind"] == "CEU"
    assert course["status"] == "draft"

    # a publishable course needs an activity (admin API, as the seed's "admin UI")
    status, body = await cluster.admin("POST", f"/tenants/acme/courses/{course['id']}/modules", json={"title": "M1"})
    assert status in (200, 201), body
    status, body = await cluster.admin("POST", f"/tenants/acme/modules/{body['data']['id']}/lessons",
                                       json={"title": "L1"})
    assert status in (200, 201), body
    status, body = await cluster.admin("POST", f"/tenants/acme/lessons/{body['data']['id']}/activities",
                                       json={"title": "Read this", "kind": "reading", "required": True})
    assert status in (200, 201), body
    status, body = await cluster.api(key, "POST", f"/courses/{course['id']}/publish")
    assert status == 200, body
    assert body["data"]["status"] == "published"

    # 2. After a Stripe checkout completes, enroll the buyer (once the enrollment service has heard of it)
    async def enrolled():
        status, body = await cluster.api(key, "POST", "/enrollments", json={
            "user_id": 123, "course_id": course["id"], "source": "stripe_purchase"})
        return body if status in (200, 201) else None

    body = await cluster.eventually(enrolled, message="the enrollment service to learn the course and user")
    enrollment = body["data"]
    assert enrollment["status"] == "active"
    assert enrollment["source"] == "stripe_purchase"
    assert enrollment["user_id"] == 123 and enrollment["course_id"] == course["id"]

    # a retried webhook returns the same enrollment
    status, again = await cluster.api(key, "POST", "/enrollments", json={
        "user_id": 123, "course_id": course["id"], "source": "stripe_purchase"})
    assert status == 200 and again["data"]["id"] == enrollment["id"]

    # Quick start: list courses, newest first, next_cursor null on the last page
    status, body = await cluster.api(key, "GET", "/courses")
    assert status == 200
    assert [c["id"] for c in body["data"]] == [course["id"]]
    assert body["next_cursor"] is None and body["request_id"].startswith("req_")
