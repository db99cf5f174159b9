"""Node health: the reconciler marks a node ``down`` when its connection fails and ``up`` when
it answers again; placement never puts a new instance on a down node; staff pages hear of
every change of a node's allocation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from tests.factories.compute import make_node
from vmcloud.compute import nodes, reconcile
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Node
from vmcloud.compute.nodes import Need, NoCapacityError
from vmcloud.core import events
from vmcloud.core.jobs import libpq_url

STALE = timedelta(minutes=10)
NEED = Need(vcpus=1, memory_mb=512, disk_gb=5)


def _fake(node: Node) -> FakeDriver:
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    return driver


def test_a_node_that_stops_answering_is_down_and_up_again_when_it_answers(db: Session) -> None:
    node = make_node(db)
    assert node.health == "unknown"
    reconcile.reconcile_node(db, node, stale_after=STALE)
    assert node.health == "up"
    first_seen = node.last_seen_at
    assert first_seen is not None

    _fake(node).reachable = False
    try:
        reconcile.reconcile_node(db, node, stale_after=STALE)
        assert node.health == "down"
        assert node.health_error == "cannot connect to the hypervisor"
        assert node.last_seen_at == first_seen  # not seen: the last time it answered stays
        down_since = node.health_changed_at
        assert down_since is not None
        reconcile.reconcile_node(db, node, stale_after=STALE)
        assert node.health_changed_at == down_since  # still down: the change is the first one
    finally:
        _fake(node).reachable = True

    reconcile.reconcile_node(db, node, stale_after=STALE)
    assert node.health == "up"
    assert node.health_error is None
    assert node.last_seen_at is not None and node.last_seen_at >= first_seen


def test_placement_skips_a_down_node(db: Session) -> None:
    down = make_node(db, memory_mb=65536)  # the roomiest: spread would pick it first
    up = make_node(db)
    _fake(down).reachable = False
    try:
        reconcile.reconcile_node(db, down, stale_after=STALE)
        reconcile.reconcile_node(db, up, stale_after=STALE)
    finally:
        _fake(down).reachable = True
    db.flush()

    chosen = nodes.reserve(db=db, region_id=down.region_id, need=NEED)
    assert chosen.id == up.id

    up.health = "down"
    db.flush()
    with pytest.raises(NoCapacityError):
        nodes.reserve(db=db, region_id=down.region_id, need=NEED)


def test_a_node_never_checked_yet_takes_instances(db: Session) -> None:
    node = make_node(db)
    assert node.health == "unknown"
    assert nodes.reserve(db=db, region_id=node.region_id, need=NEED).id == node.id


@dataclass
class Listening:
    """A committed node, its session, and the node events heard since the last look."""

    db: Session
    node: Node
    listener: psycopg.Connection[tuple[object, ...]]

    def heard(self) -> list[dict[str, str | None]]:
        # Only the node's: a commit that writes audit rows also announces ``audit``.
        payloads = [json.loads(n.payload) for n in self.listener.notifies(timeout=0.5)]
        return [p for p in payloads if str(p["kind"]).startswith("node")]


@pytest.fixture
def listening(fresh_database_url: str) -> Iterator[Listening]:
    engine = create_engine(fresh_database_url)
    try:
        with (
            psycopg.connect(libpq_url(fresh_database_url), autocommit=True) as listener,
            Session(engine) as db,
        ):
            listener.execute(f"LISTEN {events.CHANNEL}")
            node = make_node(db)
            db.commit()
            yield Listening(db, node, listener)
    finally:
        engine.dispose()


def test_reserving_and_releasing_capacity_is_announced_to_staff(listening: Listening) -> None:
    """The nodes page follows allocation: a committed reserve or release announces the node
    (staff-only: no user); one rolled back announces nothing."""
    db, node = listening.db, listening.node
    announced = {"kind": "node", "user": None, "id": str(node.id)}
    nodes.reserve(db=db, region_id=node.region_id, need=NEED)
    db.rollback()
    assert listening.heard() == []
    nodes.reserve(db=db, region_id=node.region_id, need=NEED)
    db.commit()
    assert listening.heard() == [announced]
    nodes.release(db=db, node_id=node.id, need=NEED)
    db.commit()
    assert listening.heard() == [announced]


def test_a_pass_announces_a_health_change_as_node_and_a_plain_sighting_as_node_seen(
    listening: Listening,
) -> None:
    """The overview re-counts on ``node`` only: a pass that changed nothing is ``node_seen``
    (the nodes page's "last seen"), so every node's minute does not re-render every overview."""
    db, node = listening.db, listening.node
    listening.heard()
    for up, want in (
        (True, "node"),
        (True, "node_seen"),
        (False, "node"),
        (False, "node_seen"),
    ):
        nodes.record_health(db=db, node=node, up=up, error=None if up else "gone")
        db.commit()
        assert [p["kind"] for p in listening.heard()] == [want], (up, want)
