"""The floor for the list benchmarks: a minimal ASGI app (no framework) on an asyncpg pool that
runs, for each request, exactly the statements the platform runs for the same request (the
caller's account and login check, then the page), and returns the rows as JSON.

It knows who is calling from the query string (``?user=<id>&session=<id>``) instead of a
signed token, and does no input validation, rate limiting, logging or audit binding: what it
costs is the database and the driver. Served by uvicorn like the platform (one process, h11):

    BARE_DSN=postgresql://... uvicorn bench.bare_lists:app --http h11

Keep the statements below identical to what the platform sends (``bench.lists`` checks
them against the platform's own compiled statements in every run).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import asyncpg

# The caller and whether their login is live, in one round trip (accounts.deps.require_user).
AUTH_SQL = """\
SELECT users.id, users.email, users.username, users.password_hash, users.role, users.first_name, users.last_name, users.phone, users.balance, users.status, users.email_verified, users.two_factor_enabled, users.two_factor_secret, users.last_login_at, users.created_at, users.updated_at, users.totp_last_step, EXISTS (SELECT 1 
FROM refresh_tokens 
WHERE refresh_tokens.family_id = $1::UUID AND refresh_tokens.revoked_at IS NULL AND refresh_tokens.expires_at > $2::TIMESTAMP WITHOUT TIME ZONE) AS session_live 
FROM users 
WHERE users.id = $3::UUID"""  # noqa: E501, W291

# A customer's first page (compute.service.list_instances, GET /instances).
CUSTOMER_PAGE_SQL = """\
SELECT instances.id, instances.user_id, instances.product_id, instances.name, instances.hostname, abbrev(instances.ip_address) AS ip_address, instances.status, regions.slug AS region, images.slug AS image, instances.billing_cycle, instances.error_reason, instances.transition_at, CASE WHEN (nullif(instances.metadata_json, 'null'::jsonb) IS NULL AND regions.slug IS NULL AND images.slug IS NULL AND instances.billing_cycle IS NULL) THEN NULL ELSE (coalesce(nullif(instances.metadata_json, 'null'::jsonb), '{}'::jsonb) - ARRAY['node', 'reserved', 'user_data']::text[]) || jsonb_strip_nulls(jsonb_build_object('region', regions.slug, 'image', images.slug, 'billing_cycle', instances.billing_cycle)) END AS metadata_json, instances.resources_json, instances.created_at, instances.started_at, instances.stopped_at, instances.expires_at, instances.deleted_at 
FROM instances LEFT OUTER JOIN regions ON regions.id = instances.region_id LEFT OUTER JOIN images ON images.id = instances.image_id 
WHERE instances.deleted_at IS NULL AND instances.user_id = $1::UUID ORDER BY instances.created_at DESC, instances.id DESC 
 LIMIT $2::INTEGER"""  # noqa: E501, W291

# The admin list's first page (GET /admin/instances).
ADMIN_PAGE_SQL = """\
SELECT instances.id, instances.user_id, instances.product_id, instances.name, instances.hostname, abbrev(instances.ip_address) AS ip_address, instances.status, regions.slug AS region, images.slug AS image, instances.billing_cycle, instances.error_reason, instances.transition_at, CASE WHEN (nullif(instances.metadata_json, 'null'::jsonb) IS NULL AND regions.slug IS NULL AND images.slug IS NULL AND instances.billing_cycle IS NULL AND nodes.name IS NULL) THEN NULL ELSE (coalesce(nullif(instances.metadata_json, 'null'::jsonb), '{}'::jsonb) - ARRAY['user_data']::text[]) || jsonb_strip_nulls(jsonb_build_object('region', regions.slug, 'image', images.slug, 'billing_cycle', instances.billing_cycle, 'node', nodes.name)) END AS metadata_json, instances.resources_json, instances.created_at, instances.started_at, instances.stopped_at, instances.expires_at, instances.deleted_at, instances.node_id, nodes.name AS node, instances.reserved_vcpus, instances.reserved_memory_mb, instances.reserved_disk_gb 
FROM instances LEFT OUTER JOIN regions ON regions.id = instances.region_id LEFT OUTER JOIN images ON images.id = instances.image_id LEFT OUTER JOIN nodes ON nodes.id = instances.node_id 
WHERE instances.deleted_at IS NULL ORDER BY instances.created_at DESC, instances.id DESC 
 LIMIT $1::INTEGER"""  # noqa: E501, W291

LIMIT = 50
_pool: asyncpg.Pool | None = None


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    return str(value)  # UUID, Decimal


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _send(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _pool = await asyncpg.create_pool(
                    os.environ["BARE_DSN"], min_size=10, max_size=10, init=_init
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _pool is not None:
                    await _pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert _pool is not None
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode())
    if path == "/healthz":
        await _send(send, 200, b"{}")
        return
    user_id = uuid.UUID(query["user"][0])
    session_id = uuid.UUID(query["session"][0])
    now = datetime.now(UTC).replace(tzinfo=None)
    async with _pool.acquire() as conn:
        user = await conn.fetchrow(AUTH_SQL, session_id, now, user_id)
        if user is None or user["status"] != "active" or not user["session_live"]:
            await _send(send, 401, b'{"title": "Unauthorized"}')
            return
        if path == "/instances":
            rows = await conn.fetch(CUSTOMER_PAGE_SQL, user_id, LIMIT + 1)
        elif path == "/admin/instances" and user["role"] in ("support", "admin"):
            rows = await conn.fetch(ADMIN_PAGE_SQL, LIMIT + 1)
        else:
            await _send(send, 404, b"{}")
            return
    items = [dict(row) for row in rows[:LIMIT]]
    cursor = str(items[-1]["id"]) if len(rows) > LIMIT else None
    body = json.dumps({"items": items, "next_cursor": cursor}, default=_default).encode()
    await _send(send, 200, body)
