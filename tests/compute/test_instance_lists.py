"""The instance lists (``GET /instances``, ``GET /admin/instances``): pages across cursors over
many rows, each item exactly what the single-instance view shows, filters, who may see what,
accounts and logins checked on every request, and an index behind every filter's page."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_node
from tests.helpers import bearer, login
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.catalog.models import Image, Product, Region
from vmcloud.compute import service
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.schemas import InstanceAdminRead
from vmcloud.config import Settings
from vmcloud.core.pagination import PageParams
from vmcloud.db.session import make_engine

INSTANCES = "/api/v1/instances"
ADMIN = "/api/v1/admin/instances"
T0 = datetime(2026, 6, 1, 12)


def _add_instances(
    db: Session, user: User, count: int, *, node: Node | None = None, **overrides: Any
) -> list[Instance]:
    """``count`` instances of ``user``, several sharing a creation time (the id breaks ties),
    one in ten deleted, one in five stopped."""
    product = db.scalar(select(Product).where(Product.slug == "nano"))
    region = db.scalar(select(Region).where(Region.slug == "local"))
    image = db.scalar(select(Image).where(Image.slug == "tiny-linux"))
    assert product and region and image
    rows = []
    for n in range(count):
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "user_id": user.id,
            "product_id": product.id,
            "name": f"vm-{n}",
            "hostname": f"vm-{n}.example.net",
            "status": "stopped" if n % 5 == 0 else "running",
            "created_at": T0 + timedelta(minutes=n // 3),
            "deleted_at": T0 if n % 10 == 9 else None,
            "region_id": region.id,
            "image_id": image.id,
            "billing_cycle": "hourly",
            "node_id": node.id if node else None,
            "reserved_vcpus": 1,
            "reserved_memory_mb": 512,
            "reserved_disk_gb": 10,
            "metadata_json": {"prefix": 24, "ssh_keys": [], "user_data": "secret"},
        }
        values.update(overrides)
        rows.append(Instance(**values))
    db.add_all(rows)
    db.flush()
    return rows


def _newest_first(instances: list[Instance], **match: Any) -> list[str]:
    live = [
        i
        for i in instances
        if i.deleted_at is None and all(getattr(i, k) == v for k, v in match.items())
    ]
    live.sort(key=lambda i: (i.created_at, i.id), reverse=True)
    return [str(i.id) for i in live]


def _all_pages(
    client: TestClient, url: str, headers: dict[str, str], **query: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        params = {**query, **({"cursor": cursor} if cursor else {})}
        response = client.get(url, headers=headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= int(query.get("limit", 50))
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


@pytest.fixture
def owner(db: Session) -> User:
    return make_user(db, username="list-owner")


@pytest.fixture
def staff(client: TestClient, db: Session) -> dict[str, str]:
    admin = make_user(db, role="admin", username="list-admin")
    return bearer(login(client, admin.username, PASSWORD))


@pytest.mark.parametrize("limit", [50, 7])
def test_pages_cover_each_live_instance_once_newest_first(
    client: TestClient, db: Session, owner: User, limit: int
) -> None:
    mine = _add_instances(db, owner, 130)
    _add_instances(db, make_user(db), 20)  # someone else's
    headers = bearer(login(client, owner.username, PASSWORD))

    items = _all_pages(client, INSTANCES, headers, limit=limit)

    assert [i["id"] for i in items] == _newest_first(mine)
    stopped = _all_pages(client, INSTANCES, headers, limit=limit, status="stopped")
    assert [i["id"] for i in stopped] == _newest_first(mine, status="stopped")


def test_rows_added_between_pages_neither_shift_nor_repeat(
    client: TestClient, db: Session, owner: User
) -> None:
    mine = _add_instances(db, owner, 60)
    headers = bearer(login(client, owner.username, PASSWORD))
    first = client.get(INSTANCES, headers=headers, params={"limit": 20}).json()
    _add_instances(db, owner, 5, created_at=T0 + timedelta(days=1))  # newer than every page
    rest = _all_pages(client, INSTANCES, headers, limit=20, cursor=first["next_cursor"])
    assert [i["id"] for i in first["items"] + rest] == _newest_first(mine)


def test_each_list_item_is_the_single_instance_view(
    client: TestClient, db: Session, owner: User, staff: dict[str, str]
) -> None:
    node = make_node(db)
    varied = [
        *_add_instances(db, owner, 3, node=node),
        *_add_instances(db, owner, 1, node=node, metadata_json=None),
        *_add_instances(db, owner, 1, metadata_json=None, region_id=None, image_id=None),
        *_add_instances(
            db,
            owner,
            1,
            metadata_json=None,
            region_id=None,
            image_id=None,
            billing_cycle=None,
            node_id=None,
        ),
        *_add_instances(
            db,
            owner,
            1,
            node=node,
            ip_address="198.18.9.7",
            metadata_json={"node": "old-name", "reserved": {"vcpus": 1}, "region": "stale"},
        ),
        *_add_instances(db, owner, 1, metadata_json={}, started_at=T0, error_reason="boom"),
    ]
    headers = bearer(login(client, owner.username, PASSWORD))
    ours = {i["id"]: i for i in client.get(INSTANCES, headers=headers).json()["items"]}
    every = {i["id"]: i for i in _all_pages(client, ADMIN, staff, user_id=str(owner.id))}

    live = [i for i in varied if i.deleted_at is None]
    assert set(ours) == set(every) == {str(i.id) for i in live}
    for instance in live:
        db.refresh(instance)
        single = client.get(f"{INSTANCES}/{instance.id}", headers=headers).json()
        assert ours[str(instance.id)] == single
        as_staff = json.loads(InstanceAdminRead.model_validate(instance).model_dump_json())
        assert every[str(instance.id)] == as_staff
        # Staff see the node and the reservation; the owner neither, and nobody user_data.
        assert "node" not in ours[str(instance.id)]
        assert "user_data" not in (every[str(instance.id)]["metadata_json"] or {})
        for hidden in ("node", "reserved", "user_data"):
            assert hidden not in (ours[str(instance.id)]["metadata_json"] or {})
    with_node = every[str(varied[0].id)]
    assert with_node["node"] == node.name and with_node["metadata_json"]["node"] == node.name
    assert with_node["reserved_vcpus"] == 1
    assert ours[str(varied[6].id)]["ip_address"] == "198.18.9.7"


def test_admin_filters(client: TestClient, db: Session, owner: User, staff: dict[str, str]) -> None:
    node, other_node = make_node(db), make_node(db)
    mine = _add_instances(db, owner, 40, node=node)
    theirs = _add_instances(db, make_user(db), 30, node=other_node)
    every = mine + theirs

    def ids(**query: Any) -> list[str]:
        return [i["id"] for i in _all_pages(client, ADMIN, staff, limit=9, **query)]

    assert ids(user_id=str(owner.id)) == _newest_first(mine)
    assert ids(node=other_node.name) == _newest_first(theirs)
    assert ids(status="stopped", node=node.name) == _newest_first(mine, status="stopped")
    assert ids(status="stopped") == _newest_first(every, status="stopped")
    assert ids() == _newest_first(every)
    assert ids(node="no-such-node") == []


def test_customers_and_support_see_what_their_role_allows(
    client: TestClient, db: Session, owner: User
) -> None:
    _add_instances(db, owner, 3)
    headers = bearer(login(client, owner.username, PASSWORD))
    assert client.get(ADMIN, headers=headers).status_code == 403
    support = make_user(db, role="support", username="list-support")
    seen = client.get(ADMIN, headers=bearer(login(client, support.username, PASSWORD)))
    assert seen.status_code == 200 and "node" in seen.json()["items"][0]
    assert client.get(INSTANCES).status_code == 401


# -- on a database of its own (the read-only lists run outside a transaction there) ----------


@pytest.fixture
def served(fresh_database_url: str, app_settings: Settings, tmp_path: Path) -> Iterator[Any]:
    settings = app_settings.model_copy(update={"database_url": fresh_database_url})
    engine = make_engine(settings)
    with TestClient(create_app(settings), client=("198.51.100.8", 50000)) as client:
        yield client, engine
    engine.dispose()


def test_a_suspended_account_or_an_ended_login_is_refused_on_the_next_request(
    served: tuple[TestClient, Engine],
) -> None:
    client, engine = served
    with Session(engine) as db:
        user = make_user(db, username="list-suspended")
        _add_instances(db, user, 3)
        db.commit()
        user_id = user.id
    tokens = login(client, "list-suspended", PASSWORD)
    headers = bearer(tokens)
    assert len(client.get(INSTANCES, headers=headers).json()["items"]) == 3

    with Session(engine) as db:
        db.execute(update(User).where(User.id == user_id).values(status="suspended"))
        db.commit()
    assert client.get(INSTANCES, headers=headers).status_code == 401
    with Session(engine) as db:
        db.execute(update(User).where(User.id == user_id).values(status="active"))
        db.commit()
    assert client.get(INSTANCES, headers=headers).status_code == 200

    logout = client.post(
        "/api/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert logout.status_code == 204
    refused = client.get(INSTANCES, headers=headers)
    assert refused.status_code == 401 and "ended" in refused.json()["detail"]
    # Nothing was left open: no connection idles inside a transaction.
    with engine.connect() as conn:
        stuck = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle in transaction'"
            )
        ).scalar()
    assert stuck == 0


# -- the indexes behind each page ------------------------------------------------------------


def _plan(db: Session, stmt: Any, values: dict[str, Any]) -> dict[str, Any]:
    sql = str(stmt.compile(dialect=db.get_bind().dialect))
    explain = "EXPLAIN (ANALYZE, FORMAT JSON) " + sql
    raw = db.connection().exec_driver_sql(explain, values).scalar()
    plan: dict[str, Any] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


SHAPES = [
    # (what, staff, filters, the index that must serve it)
    ("a customer's page", False, {"user_id"}, "ix_instances_live_user_created"),
    ("by status", False, {"user_id", "status"}, "ix_instances_live_user_status_created"),
    ("every instance", True, set(), "ix_instances_live_created"),
    ("one customer's, for staff", True, {"user_id"}, "ix_instances_live_user_created"),
    ("by status, for staff", True, {"status"}, "ix_instances_live_status_created"),
    ("by node, for staff", True, {"node"}, "ix_instances_live_node_created"),
]


@pytest.mark.parametrize(("what", "staff", "filters", "index"), SHAPES, ids=[s[0] for s in SHAPES])
def test_each_page_reads_one_page_of_rows_by_its_index(
    db: Session, owner: User, what: str, staff: bool, filters: set[str], index: str
) -> None:
    node = make_node(db)
    _add_instances(db, owner, 300, node=node)
    # The owner's rows a small part of the table, as in life: 20 others with 300 each, all
    # running, on other nodes.
    mine = db.scalar(select(Instance).where(Instance.user_id == owner.id).limit(1))
    assert mine is not None
    for _ in range(20):
        db.execute(
            text(
                "INSERT INTO instances (user_id, product_id, name, status, created_at, node_id,"
                " region_id, image_id, billing_cycle)"
                " SELECT :user, :product, 'bulk-' || n, 'running',"
                "        :t0 + n * interval '1 minute', :node, :region, :image, 'hourly'"
                "   FROM generate_series(1, 300) AS n"
            ),
            {
                "user": make_user(db).id,
                "product": mine.product_id,
                "t0": T0,
                "node": make_node(db).id,
                "region": mine.region_id,
                "image": mine.image_id,
            },
        )
    db.execute(text("ANALYZE instances"))
    # However small the test table, no plan that reads and sorts every matching row: only an
    # index that gives the filter's rows in page order avoids a Sort node.
    for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
        db.execute(text(f"SET LOCAL {setting} = off"))
    values = {"user_id": owner.id, "status": "stopped", "node": node.name}
    params = PageParams(limit=50)
    for cursor_page in (False, True):
        if cursor_page:
            first, cursor = service.list_instance_views(
                db=db, params=params, staff=staff, **{k: values[k] for k in filters}
            )
            assert len(first) == 50 and cursor
            params = PageParams(limit=50, cursor=cursor)
        page, bound = service._view_page_for(
            params,
            staff,
            values["user_id"] if "user_id" in filters else None,
            values["status"] if "status" in filters else None,
            values["node"] if "node" in filters else None,
        )
        plan = _plan(db, page.stmt, page.values(params) | bound)
        scans = [n for n in _nodes(plan) if n.get("Relation Name") == "instances"]
        assert [n.get("Index Name") for n in scans] == [index], json.dumps(plan, indent=1)
        assert not [n for n in _nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
        assert scans[0]["Actual Rows"] <= 51
