"""Where a new instance goes: ``compute.placement`` spreads or packs over the enabled nodes."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from tests.compute.test_instances_api import _order
from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import local_region, make_node, make_pool
from tests.helpers import bearer, login
from vmcloud.compute import nodes
from vmcloud.compute.models import Instance, Node
from vmcloud.site_settings.registry import Placement

NEED = nodes.Need(vcpus=1, memory_mb=1024, disk_gb=10)
SETTING = "/api/v1/admin/settings/compute.placement"


def _node(db: Session, *, free_mb: int, status: str = "enabled", **more: object) -> Node:
    """A fake node of 16 GB with all but ``free_mb`` of its memory taken."""
    return make_node(
        db,
        memory_mb=16384,
        allocated_memory_mb=16384 - free_mb,
        ram_overcommit=Decimal("1.0"),
        status=status,
        **more,
    )


def _reserve(db: Session, placement: Placement, need: nodes.Need = NEED) -> Node:
    return nodes.reserve(db=db, region_id=local_region(db).id, need=need, placement=placement)


def test_spread_takes_the_node_with_the_most_free_memory(db: Session) -> None:
    _node(db, free_mb=2048)
    roomy = _node(db, free_mb=12288)
    _node(db, free_mb=6144)
    chosen = _reserve(db, "spread")
    assert chosen.id == roomy.id
    assert chosen.allocated_memory_mb == 16384 - 12288 + NEED.memory_mb


def test_pack_takes_the_fullest_node_that_still_fits(db: Session) -> None:
    _node(db, free_mb=512)  # fuller, but the plan does not fit
    snug = _node(db, free_mb=1536)
    _node(db, free_mb=12288)
    assert _reserve(db, "pack").id == snug.id
    # Now 512 MB are left there: the next one goes to the next-fullest that fits.
    assert _reserve(db, "pack").id != snug.id


def test_equal_memory_is_decided_by_free_vcpus(db: Session) -> None:
    busy = _node(db, free_mb=4096, vcpus=8, cpu_overcommit=Decimal("1.0"), allocated_vcpus=6)
    idle = _node(db, free_mb=4096, vcpus=8, cpu_overcommit=Decimal("1.0"), allocated_vcpus=1)
    with db.begin_nested() as first_try:  # each mode from the same start
        assert _reserve(db, "spread").id == idle.id
        first_try.rollback()
    assert _reserve(db, "pack").id == busy.id


@pytest.mark.parametrize("placement", ["spread", "pack"])
def test_disabled_and_maintenance_nodes_get_nothing(db: Session, placement: Placement) -> None:
    # Each of these would win in one of the two modes.
    _node(db, free_mb=16384, status="disabled")
    _node(db, free_mb=1024, status="maintenance")
    middle = _node(db, free_mb=8192)
    assert _reserve(db, placement).id == middle.id
    # The enabled node full, nothing is placed at all.
    with pytest.raises(nodes.NoCapacityError):
        _reserve(db, placement, nodes.Need(vcpus=1, memory_mb=8192, disk_gb=1))


def _placed(db: Session, response_json: dict[str, object]) -> uuid.UUID:
    instance = db.get(Instance, uuid.UUID(str(response_json["id"])))
    assert instance is not None and instance.node_id is not None
    return instance.node_id


def test_the_setting_decides_where_orders_go(client: TestClient, db: Session) -> None:
    admin = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    customer = bearer(login(client, make_user(db, balance="500.00").username, PASSWORD))
    first, second = make_node(db), make_node(db)
    make_pool(db, "198.18.46.0/28")

    # The default spreads: two orders, two nodes.
    spread = {_placed(db, _order(client, customer, name=f"s{n}").json()) for n in range(2)}
    assert spread == {first.id, second.id}

    changed = client.put(SETTING, json={"value": "pack"}, headers=admin)
    assert changed.status_code == 200, changed.text
    packed = {_placed(db, _order(client, customer, name=f"p{n}").json()) for n in range(3)}
    assert len(packed) == 1


@pytest.mark.parametrize("value", ["random", "", 1, None, ["spread"]])
def test_the_setting_takes_spread_or_pack_only(
    client: TestClient, db: Session, value: object
) -> None:
    admin = bearer(login(client, make_user(db, role="admin").username, PASSWORD))
    refused = client.put(SETTING, json={"value": value}, headers=admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "value"
