"""``learnctl``: the admin CLI. It only talks to the gateway's admin API (nothing is written behind its back).

    learnctl tenants create acme --name "Acme" --plan pro
    learnctl keys create acme --name "shop backend" --scope learn:read --scope learn:write
    learnctl users upsert acme 123 --name "Ada Lovelace" --email ada@example.com
    learnctl staff invite acme ada@example.com --name "Ada" --role author
    learnctl team set acme 12 7 --role editor
    learnctl dlq list --service catalog
    learnctl webhooks create acme https://hr.example.com/hooks --event-type certificate.issued
    learnctl subscribers create acme hr-system

``--url`` defaults to ``LEARN_GATEWAY_URL`` or http://localhost:8080; ``--token`` to ``LEARN_ADMIN_TOKEN`` or the
``<LEARN_DATA_DIR>/admin_token`` file the gateway writes when no token is configured. ``--json`` prints the raw
response data.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ADMIN = "/admin/api/v1"


class CliError(Exception):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class AdminClient:
    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> dict[str, Any]:
        qs = urlencode({k: v for k, v in (query or {}).items() if v is not None})
        url = self.url + ADMIN + path + (f"?{qs}" if qs else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - the operator's own URL
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return dict(json.loads(response.read() or b"{}"))
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read())["error"]
            except Exception:
                raise CliError(f"HTTP {exc.code} from {url}") from None
            raise CliError(f"{error['code']}: {error['message']} (request {error.get('request_id')})") from None
        except urllib.error.URLError as exc:
            raise CliError(f"cannot reach the gateway at {self.url}: {exc.reason}", code=2) from None


def default_token() -> str | None:
    token = os.environ.get("LEARN_ADMIN_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("LEARN_DATA_DIR", ".data")) / "admin_token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# --- output -------------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c.upper())] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def record(row: dict[str, Any]) -> str:
    width = max((len(k) for k in row), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v) if not isinstance(v, dict) else json.dumps(v)}"
                     for k, v in row.items())


TENANT_COLUMNS = ["id", "slug", "name", "plan", "status", "created_at"]
KEY_COLUMNS = ["id", "name", "prefix", "scopes", "course_ids", "status", "created_by", "last_used_at", "expires_at"]


def _course_ids(values: list[str]) -> list[int]:
    """``--course 12 --course 13,14`` → [12, 13, 14]; anything but positive integers is a usage error."""
    ids: list[int] = []
    for value in values:
        for part in value.replace(",", " ").split():
            if not part.isdigit() or int(part) < 1:
                raise CliError(f"--course: {part!r} is not a course id (a positive integer)")
            ids.append(int(part))
    if not ids:
        raise CliError("--course: give at least one course id")
    return ids
USER_COLUMNS = ["id", "name", "email", "revision", "updated_at"]
DLQ_COLUMNS = ["queue", "service", "messages"]
STAFF_COLUMNS = ["id", "email", "name", "role", "status", "updated_at"]
TEAM_COLUMNS = ["staff_id", "email", "name", "role", "status"]
AUDIT_COLUMNS = ["id", "at", "actor", "actor_email", "method", "path", "status"]
WEBHOOK_COLUMNS = ["id", "url", "status", "event_types", "description", "failing_since"]
SUBSCRIBER_COLUMNS = ["name", "username", "queue_prefix", "binding_keys", "exchange", "vhost"]
MESSAGE_COLUMNS = ["id", "webhook_id", "event_type", "status", "attempts", "next_attempt_at", "delivered_at"]


# --- commands -----------------------------------------------------------------------------------------------


def _all_pages(client: AdminClient, path: str, limit: int | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.call("GET", path, query={"limit": min(limit or 100, 100), "cursor": cursor})
        rows.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor or (limit is not None and len(rows) >= limit):
            return rows[:limit] if limit else rows


def _queues(client: AdminClient, args: argparse.Namespace) -> list[str]:
    if args.queue:
        return [args.queue]
    if not args.service:
        raise CliError("name a --queue or a --service")
    summary = client.call("GET", "/dlq", query={"service": args.service})["data"]
    return [q["queue"] for q in summary]


def run(args: argparse.Namespace, client: AdminClient) -> tuple[Any, str]:
    """Do the command; returns (data for --json, text for humans)."""
    group, action = args.group, args.action
    if group == "tenants":
        if action == "create":
            data = client.call("POST", "/tenants", {"slug": args.slug, "name": args.name, "plan": args.plan})["data"]
            return data, record(data)
        if action == "list":
            rows = _all_pages(client, "/tenants", args.limit)
            return rows, table(rows, TENANT_COLUMNS)
        if action == "get":
            data = client.call("GET", f"/tenants/{quote(args.slug)}")["data"]
            return data, record(data)
        if action == "update":
            changes = {k: getattr(args, k) for k in ("name", "plan", "status") if getattr(args, k) is not None}
            if not changes:
                raise CliError("nothing to update: give --name, --plan or --status")
            data = client.call("POST", f"/tenants/{quote(args.slug)}", changes)["data"]
            return data, record(data)
    if group == "keys":
        base = f"/tenants/{quote(args.slug)}/api-keys"
        if action == "create":
            scopes = [s for value in args.scope for s in value.replace(",", " ").split()]
            body: dict[str, Any] = {"name": args.name, "scopes": scopes, "mode": "test" if args.test else "live"}
            if args.expires_at:
                body["expires_at"] = args.expires_at
            if args.created_by is not None:
                body["created_by"] = args.created_by
            if args.course:
                body["course_ids"] = _course_ids(args.course)
            data = client.call("POST", base, body)["data"]
            text = record({k: v for k, v in data.items() if k != "key"})
            return data, f"{text}\n\nAPI key (shown once, store it now):\n{data['key']}"
        if action == "list":
            rows = _all_pages(client, base, args.limit)
            return rows, table(rows, KEY_COLUMNS)
        if action == "revoke":
            data = client.call("POST", f"{base}/{args.id}/revoke")["data"]
            return data, record(data)
    if group == "users":
        base = f"/tenants/{quote(args.slug)}/users"
        if action == "upsert":
            data = client.call("PUT", f"{base}/{args.user_id}", {"name": args.name, "email": args.email})["data"]
            return data, record(data)
        if action == "list":
            rows = _all_pages(client, base, args.limit)
            return rows, table(rows, USER_COLUMNS)
    if group == "dlq":
        if action == "list":
            rows = client.call("GET", "/dlq", query={"service": args.service})["data"]
            return rows, table(rows, DLQ_COLUMNS)
        results: list[Any] = []
        texts: list[str] = []
        for name in _queues(client, args):
            if action == "show":
                messages = client.call("GET", f"/dlq/{quote(name)}", query={"limit": args.limit})["data"]
                results.append({"queue": name, "messages": messages})
                texts.append(f"{name}: {len(messages)} message(s)")
                texts += [f"  {m.get('event_id', '?')}  {m.get('type', '?')}  tenant={m.get('tenant', '?')}  "
                          f"reason={m.get('death', {}).get('reason', '-')}" for m in messages]
            elif action == "replay":
                data = client.call("POST", f"/dlq/{quote(name)}/replay", query={"limit": args.limit})["data"]
                results.append(data)
                texts.append(f"{name}: replayed {data['replayed']}")
            elif action == "purge":
                if not args.yes:
                    raise CliError("purging deletes the messages for good: add --yes")
                data = client.call("POST", f"/dlq/{quote(name)}/purge")["data"]
                results.append(data)
                texts.append(f"{name}: purged {data['purged']}")
        return results, "\n".join(texts)
    if group == "webhooks":
        return _webhooks(args, client)
    if group == "subscribers":
        return _subscribers(args, client)
    if group in ("staff", "team", "audit"):
        return _staff(args, client)
    raise CliError(f"unknown command {group} {action}")


def _link_text(data: dict[str, Any], key: str) -> str:
    link = data.get(key) or {}
    if link.get("mailed"):
        return f"\n\nThe link was mailed to {data['email']}."
    return f"\n\nSingle-use link (shown once; give it to {data['email']}):\n{link.get('url')}"


def _staff(args: argparse.Namespace, client: AdminClient) -> tuple[Any, str]:
    """``staff`` (tenant staff), ``team`` (a course's team) and ``audit`` (the tenant's audit log); ADR 0021."""
    group, action = args.group, args.action
    base = f"/tenants/{quote(args.slug)}"
    if group == "staff":
        if action == "invite":
            data = client.call("POST", f"{base}/staff", {"email": args.email, "name": args.name,
                                                         "role": args.role})["data"]
            return data, record({k: v for k, v in data.items() if k != "invitation"}) + _link_text(data, "invitation")
        if action == "list":
            rows = _all_pages(client, f"{base}/staff", args.limit)
            return rows, table(rows, STAFF_COLUMNS)
        if action in ("update", "suspend", "activate"):
            changes = ({"status": "suspended"} if action == "suspend" else {"status": "active"} if action == "activate"
                       else {k: getattr(args, k) for k in ("name", "role") if getattr(args, k) is not None})
            if not changes:
                raise CliError("nothing to update: give --name or --role")
            data = client.call("POST", f"{base}/staff/{args.id}", changes)["data"]
            return data, record(data)
        if action == "reset-password":
            data = client.call("POST", f"{base}/staff/{args.id}/reset-password")["data"]
            return data, record({k: v for k, v in data.items() if k != "link"}) + _link_text(data, "link")
    if group == "team":
        path = f"{base}/courses/{args.course_id}/team"
        if action == "list":
            rows = client.call("GET", path)["data"]
        elif action == "set":
            rows = client.call("PUT", f"{path}/{args.staff_id}", {"role": args.role})["data"]
        else:
            rows = client.call("DELETE", f"{path}/{args.staff_id}")["data"]
        return rows, table(rows, TEAM_COLUMNS)
    if group == "audit":
        rows = _all_pages(client, f"{base}/audit-log", args.limit)
        return rows, table(rows, AUDIT_COLUMNS)
    raise CliError(f"unknown command {group} {action}")


def _webhooks(args: argparse.Namespace, client: AdminClient) -> tuple[Any, str]:
    """``learnctl webhooks ...``: the tenant's webhook endpoints, their delivery log and replays."""
    action = args.action
    base = f"/tenants/{quote(args.slug)}/webhook-endpoints"
    if action == "list":
        rows = _all_pages(client, base, args.limit)
        return rows, table(rows, WEBHOOK_COLUMNS)
    if action == "create":
        body = {"url": args.url, "description": args.description or "", "event_types": args.event_type or []}
        data = client.call("POST", base, body)["data"]
        text = record({k: v for k, v in data.items() if k != "secret"})
        return data, f"{text}\n\nSigning secret (shown once, store it now):\n{data['secret']}"
    path = f"{base}/{args.id}"
    if action == "get":
        data = client.call("GET", path)["data"]
        return data, record(data)
    if action == "update":
        changes: dict[str, Any] = {k: getattr(args, k) for k in ("url", "description", "status")
                                   if getattr(args, k) is not None}
        if args.event_type is not None:
            changes["event_types"] = [] if args.event_type == ["*"] else args.event_type
        if not changes:
            raise CliError("nothing to update: give --url, --description, --event-type or --status")
        data = client.call("POST", path, changes)["data"]
        return data, record(data)
    if action == "delete":
        data = client.call("DELETE", path)["data"]
        return data, f"deleted webhook endpoint {data['id']}"
    if action == "rotate-secret":
        data = client.call("POST", f"{path}/rotate-secret")["data"]
        return data, f"New signing secret (shown once; the previous one signs too until " \
                     f"{data['previous_secret_expires_at']}):\n{data['secret']}"
    if action == "test":
        data = client.call("POST", f"{path}/test")["data"]
        return data, record(data)
    if action == "messages":
        rows = client.call("GET", f"{path}/messages", query={"limit": min(args.limit, 100),
                                                              "status": args.status})["data"]
        return rows, table(rows, MESSAGE_COLUMNS)
    if action == "replay":
        if args.message is not None:
            data = client.call("POST", f"{path}/messages/{args.message}/replay")["data"]
            return data, record(data)
        if not args.since:
            raise CliError("name a --message or a --since time")
        data = client.call("POST", f"{path}/replay", {"since": args.since})["data"]
        return data, f"replaying {data['replayed']} message(s)"
    raise CliError(f"unknown command webhooks {action}")


def _subscribers(args: argparse.Namespace, client: AdminClient) -> tuple[Any, str]:
    """``learnctl subscribers ...``: the tenant's AMQP subscribers (RabbitMQ users limited to the tenant)."""
    action = args.action
    base = f"/tenants/{quote(args.slug)}/event-subscribers"
    if action == "list":
        rows = client.call("GET", base)["data"]
        return rows, table(rows, SUBSCRIBER_COLUMNS)
    if action == "create":
        data = client.call("POST", base, {"name": args.name})["data"]
    elif action == "rotate":
        data = client.call("POST", f"{base}/{quote(args.name)}/rotate")["data"]
    elif action == "delete":
        data = client.call("DELETE", f"{base}/{quote(args.name)}")["data"]
        return data, f"deleted event subscriber {data['name']}; its connections are closed"
    else:
        raise CliError(f"unknown command subscribers {action}")
    text = record({k: v for k, v in data.items() if k != "amqp_url"})
    return data, f"{text}\n\nAMQP URL (shown once, store it now; bind a queue named {data['queue_prefix']}... " \
                 f"to {data['exchange']} with {data['binding_keys']}):\n{data['amqp_url']}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="learnctl", description="mobieusLearn admin CLI (talks to the admin API)")
    p.add_argument("--url", default=os.environ.get("LEARN_GATEWAY_URL", "http://localhost:8080"))
    p.add_argument("--token", default=None, help="admin token (default: LEARN_ADMIN_TOKEN or <data_dir>/admin_token)")
    p.add_argument("--json", action="store_true", help="print the response data as JSON")
    groups = p.add_subparsers(dest="group", required=True)

    tenants = groups.add_parser("tenants").add_subparsers(dest="action", required=True)
    c = tenants.add_parser("create")
    c.add_argument("slug")
    c.add_argument("--name", required=True)
    c.add_argument("--plan", required=True, choices=["free", "starter", "pro", "creator_plus", "sovereign"])
    tenants.add_parser("list").add_argument("--limit", type=int)
    tenants.add_parser("get").add_argument("slug")
    u = tenants.add_parser("update")
    u.add_argument("slug")
    u.add_argument("--name")
    u.add_argument("--plan")
    u.add_argument("--status", choices=["active", "suspended"])

    keys = groups.add_parser("keys").add_subparsers(dest="action", required=True)
    c = keys.add_parser("create")
    c.add_argument("slug")
    c.add_argument("--name", required=True)
    c.add_argument("--scope", action="append", required=True,
                   help="learn:read, learn:write, learn:cohorts:grant (repeat or comma-separate)")
    c.add_argument("--expires-at", help="RFC 3339 time")
    c.add_argument("--created-by", type=int, help="directory user id of the admin behind the key")
    c.add_argument("--test", action="store_true", help="make an mc_test_ key")
    c.add_argument("--course", action="append",
                   help="limit the key to this course id (repeat or comma-separate; default: every course)")
    ls = keys.add_parser("list")
    ls.add_argument("slug")
    ls.add_argument("--limit", type=int)
    r = keys.add_parser("revoke")
    r.add_argument("slug")
    r.add_argument("id", type=int)

    users = groups.add_parser("users").add_subparsers(dest="action", required=True)
    up = users.add_parser("upsert")
    up.add_argument("slug")
    up.add_argument("user_id", type=int)
    up.add_argument("--name", required=True)
    up.add_argument("--email", required=True)
    ls = users.add_parser("list")
    ls.add_argument("slug")
    ls.add_argument("--limit", type=int)

    staff = groups.add_parser("staff", help="tenant staff (ADR 0021)").add_subparsers(dest="action", required=True)
    inv = staff.add_parser("invite")
    inv.add_argument("slug")
    inv.add_argument("email")
    inv.add_argument("--name", required=True)
    inv.add_argument("--role", required=True, choices=["owner", "admin", "author", "viewer"])
    ls = staff.add_parser("list")
    ls.add_argument("slug")
    ls.add_argument("--limit", type=int)
    for name in ("update", "suspend", "activate", "reset-password"):
        sp = staff.add_parser(name)
        sp.add_argument("slug")
        sp.add_argument("id", type=int)
        if name == "update":
            sp.add_argument("--name")
            sp.add_argument("--role", choices=["owner", "admin", "author", "viewer"])
    team = groups.add_parser("team", help="a course's team").add_subparsers(dest="action", required=True)
    for name in ("list", "set", "remove"):
        sp = team.add_parser(name)
        sp.add_argument("slug")
        sp.add_argument("course_id", type=int)
        if name != "list":
            sp.add_argument("staff_id", type=int)
        if name == "set":
            sp.add_argument("--role", default="editor", choices=["lead", "editor"])
    audit = groups.add_parser("audit", help="the tenant's audit log").add_subparsers(dest="action", required=True)
    ls = audit.add_parser("list")
    ls.add_argument("slug")
    ls.add_argument("--limit", type=int)

    dlq = groups.add_parser("dlq").add_subparsers(dest="action", required=True)
    dlq.add_parser("list").add_argument("--service")
    for name, default_limit in (("show", 20), ("replay", 1000), ("purge", None)):
        sp = dlq.add_parser(name)
        sp.add_argument("--service")
        sp.add_argument("--queue", help="e.g. certificates.issue")
        if default_limit is not None:
            sp.add_argument("--limit", type=int, default=default_limit)
        if name == "purge":
            sp.add_argument("--yes", action="store_true")

    hooks = groups.add_parser("webhooks").add_subparsers(dest="action", required=True)
    ls = hooks.add_parser("list")
    ls.add_argument("slug")
    ls.add_argument("--limit", type=int)
    c = hooks.add_parser("create")
    c.add_argument("slug")
    c.add_argument("url")
    c.add_argument("--description")
    c.add_argument("--event-type", action="append", help="exact type or family (enrollment.*); repeat; none: all")
    for name in ("get", "update", "delete", "rotate-secret", "test", "messages", "replay"):
        sp = hooks.add_parser(name)
        sp.add_argument("slug")
        sp.add_argument("id", type=int)
        if name == "update":
            sp.add_argument("--url")
            sp.add_argument("--description")
            sp.add_argument("--event-type", action="append", help="replaces the filter; '*' for every event")
            sp.add_argument("--status", choices=["enabled", "disabled"])
        if name == "messages":
            sp.add_argument("--status", choices=["pending", "delivered", "failed"])
            sp.add_argument("--limit", type=int, default=50)
        if name == "replay":
            sp.add_argument("--message", type=int, help="one message id")
            sp.add_argument("--since", help="every message created since this RFC 3339 time")

    subs = groups.add_parser("subscribers", help="AMQP subscribers of a tenant (needs RabbitMQ)") \
        .add_subparsers(dest="action", required=True)
    subs.add_parser("list").add_argument("slug")
    for name in ("create", "delete", "rotate"):
        sp = subs.add_parser(name)
        sp.add_argument("slug")
        sp.add_argument("name", help="lowercase letters, digits and '-'")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    token = args.token or default_token()
    if not token:
        sys.stderr.write("learnctl: no admin token: pass --token, set LEARN_ADMIN_TOKEN, or run where "
                         "<LEARN_DATA_DIR>/admin_token exists\n")
        return 2
    try:
        data, text = run(args, AdminClient(args.url, token))
    except CliError as exc:
        sys.stderr.write(f"learnctl: {exc}\n")
        return exc.code
    sys.stdout.write((json.dumps(data, indent=2) if args.json else text) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
