"""0013 moves an instance's load-bearing state out of metadata_json into columns and back."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from vmcloud.db import migrate
from vmcloud.db.embedded import EmbeddedPostgres

BEFORE, AFTER = "0012_support", "0013_instance_columns"
COLUMNS = (
    "region_id, image_id, billing_cycle, reserved_vcpus, reserved_memory_mb, reserved_disk_gb,"
    " transition_at, error_reason, metadata_json"
)
OLD_METADATA: dict[str, Any] = {
    "region": "local",
    "image": "tiny-linux",
    "node": "node-a",
    "billing_cycle": "monthly",
    "prefix": 24,
    "gateway": "198.18.0.1",
    "ssh_keys": ["ssh-ed25519 AAAA test"],
    "user_data": "#cloud-config\n",
    "transition_at": "2026-11-30T10:11:12.345678",
    "error": "the VM did not stay up",
    "reserved": {"vcpus": 2, "memory_mb": 2048, "disk_gb": 40},
}
# Written by hand once: a region nobody has, no reservation, no time.
ODD_METADATA: dict[str, Any] = {"region": "gone", "image": "tiny-linux", "billing_cycle": "hourly"}


def _insert_instances(conninfo: str) -> None:
    with psycopg.connect(conninfo) as conn:
        user = conn.execute(
            "INSERT INTO users (email, username, password_hash)"
            " VALUES ('m@example.com', 'm', 'x') RETURNING id"
        ).fetchone()
        product = conn.execute("SELECT id FROM products LIMIT 1").fetchone()
        node = conn.execute(
            "INSERT INTO nodes (name, region_id, uri, storage_dir, vcpus, memory_mb, disk_gb)"
            " SELECT 'node-a', id, 'fake://a', '/srv', 8, 8192, 100 FROM regions"
            " WHERE slug = 'local' RETURNING id"
        ).fetchone()
        assert user and product and node
        for name, metadata, node_id in (
            ("old", OLD_METADATA, node[0]),
            ("odd", ODD_METADATA, None),
            ("bare", None, None),
        ):
            conn.execute(
                "INSERT INTO instances (user_id, product_id, name, metadata_json, node_id)"
                " VALUES (%s, %s, %s, %s, %s)",
                (user[0], product[0], name, json.dumps(metadata) if metadata else None, node_id),
            )


def _rows(conninfo: str, columns: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(conninfo, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT name, {columns} FROM instances").fetchall()  # type: ignore[arg-type]
        catalog = conn.execute("SELECT id, slug FROM regions UNION ALL SELECT id, slug FROM images")
        slugs = {row["id"]: row["slug"] for row in catalog}
    for row in rows:
        for key in ("region_id", "image_id"):
            if key in row:
                row[key] = slugs.get(row[key])
    return {row.pop("name"): row for row in rows}


def test_upgrade_moves_the_state_into_columns_and_downgrade_moves_it_back(
    pg: EmbeddedPostgres,
) -> None:
    pg.drop_database("instance_columns")
    pg.create_database("instance_columns")
    url, conninfo = pg.url("instance_columns"), pg.conninfo("instance_columns")
    migrate.upgrade(url, BEFORE)
    _insert_instances(conninfo)

    migrate.upgrade(url, AFTER)
    moved = _rows(conninfo, COLUMNS)
    old = moved["old"]
    assert (old["region_id"], old["image_id"], old["billing_cycle"]) == (
        "local",
        "tiny-linux",
        "monthly",
    )
    assert (old["reserved_vcpus"], old["reserved_memory_mb"], old["reserved_disk_gb"]) == (
        2,
        2048,
        40,
    )
    assert old["transition_at"].isoformat() == OLD_METADATA["transition_at"]
    assert old["error_reason"] == "the VM did not stay up"
    # What stays is the guest's configuration.
    assert old["metadata_json"] == {
        k: OLD_METADATA[k] for k in ("prefix", "gateway", "ssh_keys", "user_data")
    }
    odd = moved["odd"]
    assert (odd["region_id"], odd["image_id"], odd["billing_cycle"]) == (
        None,
        "tiny-linux",
        "hourly",
    )
    assert odd["reserved_vcpus"] is None and odd["transition_at"] is None
    assert odd["metadata_json"] == {"region": "gone"}  # kept: it names no region
    assert moved["bare"]["metadata_json"] is None

    migrate.downgrade(url, BEFORE)
    restored = _rows(conninfo, "metadata_json")
    assert restored["old"]["metadata_json"] == OLD_METADATA
    assert restored["odd"]["metadata_json"] == ODD_METADATA
    assert restored["bare"]["metadata_json"] is None

    migrate.upgrade(url, AFTER)
    assert _rows(conninfo, COLUMNS) == moved
