"""The staff overview (``/admin``): its counters, who sees the audit rows, and its stream."""

from __future__ import annotations

import asyncio
import re
import uuid
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.factories.support import make_ticket
from tests.web.conftest import log_in
from vmcloud.accounts.models import User
from vmcloud.billing import flows, ledger
from vmcloud.billing.models import Subscription
from vmcloud.compute import nodes
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.jobs import libpq_url
from vmcloud.web.admin import overview
from vmcloud.web.events import Hub

COUNT = re.compile(r'data-count="([a-z0-9-]+)"[^>]*>([^<]*)<')


def counts(html: str) -> dict[str, str]:
    return dict(COUNT.findall(html))


def staff(panel: TestClient, db: Session, role: str = "admin") -> User:
    user = make_user(db, role=role)
    log_in(panel, user.username, PASSWORD)
    return user


def order(db: Session, name: str) -> None:
    plan = make_product(
        db,
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"monthly": "4.00"},
    )
    owner = make_user(db, balance="50.00")
    body = InstanceCreate(
        name=name, product=plan.slug, region="local", image="tiny-linux", billing_cycle="monthly"
    )
    flows.order_instance(db=db, owner=owner, body=body)


def test_every_counter_counts_what_it_says(panel: TestClient, db: Session) -> None:
    staff(panel, db)
    before = counts(panel.get("/admin").text)

    node = make_node(db, vcpus=8, memory_mb=8192, disk_gb=100, cpu_overcommit=Decimal(1))
    make_pool(db, "198.18.70.0/24")
    nodes.record_health(db=db, node=node, up=True)
    down = make_node(db, vcpus=8, memory_mb=8192, disk_gb=100)
    nodes.record_health(db=db, node=down, up=False, error="refused")
    order(db, "counted")
    customer = make_user(db, balance="5.00")
    make_ticket(db, customer)
    ledger.post(
        db=db, user_id=customer.id, type_="payment", amount=Decimal("20.50"), currency="USD"
    )
    job = jobs.defer(db, "billing.verify_ledger")
    db.execute(text("UPDATE procrastinate_jobs SET status = 'failed' WHERE id = :id"), {"id": job})
    sub = db.query(Subscription).filter_by(status="active").first()
    assert sub is not None
    sub.status = "past_due"
    db.flush()

    after = counts(panel.get("/admin").text)
    delta = {k: int(after[k]) - int(before.get(k, "0")) for k in after if after[k].isdigit()}
    assert delta["instances"] == 1 and delta["instances-pending"] == 1
    assert delta["nodes-up"] == 1 and delta["nodes-down"] == 1
    assert delta["tickets-open"] == 1 and delta["tickets-unassigned"] == 1
    assert delta["top-ups"] == 1
    assert delta["failed-jobs"] == 1
    assert delta["past-due"] >= 1


def test_capacity_is_allocated_over_the_room_of_enabled_nodes(db: Session) -> None:
    before = nodes.health_summary(db=db)
    make_node(db, vcpus=10, memory_mb=1000, disk_gb=100, cpu_overcommit=Decimal(2),
              allocated_vcpus=5, allocated_memory_mb=250, allocated_disk_gb=10)  # fmt: skip
    make_node(db, status="disabled", vcpus=10, memory_mb=1000, disk_gb=100, allocated_vcpus=9)
    after = nodes.health_summary(db=db)
    assert after.vcpus.room - before.vcpus.room == 20
    assert after.vcpus.allocated - before.vcpus.allocated == 5
    assert after.memory_mb.allocated - before.memory_mb.allocated == 250
    assert after.not_enabled - before.not_enabled == 1
    assert after.unknown - before.unknown == 1


def test_top_ups_today_sum_completed_payments_only(db: Session) -> None:
    from vmcloud.billing.payments import service as payments

    before = payments.top_ups_today(db=db)
    user = make_user(db)
    for amount, status in (("10.25", "completed"), ("5.00", "pending")):
        ledger.post(
            db=db, user_id=user.id, type_="payment", amount=Decimal(amount), currency="USD",
            status=status,
        )  # fmt: skip
    ledger.post(db=db, user_id=user.id, type_="credit", amount=Decimal("3"), currency="USD")
    after = payments.top_ups_today(db=db)
    assert after.count - before.count == 1
    assert after.total - before.total == Decimal("10.25")


def test_only_admins_see_the_recent_audit_rows(panel: TestClient, db: Session) -> None:
    staff(panel, db, role="support")
    page = panel.get("/admin")
    assert page.status_code == 200
    assert 'id="recent-audit"' not in page.text
    assert 'href="/admin/nodes"' not in page.text  # an admin-only page: no link
    panel.cookies.clear()
    staff(panel, db, role="admin")
    page = panel.get("/admin")
    assert 'id="recent-audit"' in page.text
    assert "user.login" in page.text  # the admin's own login, a moment ago


def test_admins_see_the_backup_problems(panel: TestClient, db: Session) -> None:
    staff(panel, db, role="support")
    assert 'id="stat-backups"' not in panel.get("/admin").text
    panel.cookies.clear()
    staff(panel, db, role="admin")
    page = panel.get("/admin").text
    assert 'id="stat-backups"' in page
    # The test database is not this installation's embedded one: nothing backs it up here.
    assert "Backups are not managed by this installation" in page


def test_the_stream_re_renders_the_counters_out_of_band(
    panel: TestClient, db: Session, app_settings: Settings
) -> None:
    agent = staff(panel, db, role="support")
    raw = panel.cookies.get("__Host-vmc_session")
    html = overview.live_counters(db, raw, app_settings) or ""
    assert html.startswith('<section id="overview-counters"') or 'id="overview-counters"' in html
    assert 'hx-swap-oob="true"' in html
    assert 'id="recent-audit"' not in html
    before = counts(html)["tickets-open"]
    make_ticket(db, make_user(db))
    assert counts(overview.live_counters(db, raw, app_settings) or "")["tickets-open"] == str(
        int(before) + 1
    )
    assert overview.live_counters(db, "not-a-session", app_settings) is None
    agent.role = "customer"  # demoted while the stream is open: it renders nothing more
    db.flush()
    assert overview.live_counters(db, raw, app_settings) is None


def test_the_stream_refuses_customers(panel: TestClient, db: Session) -> None:
    answer = panel.get("/admin/stream")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    staff(panel, db, role="customer")
    answer = panel.get("/admin/stream", headers={"accept": "text/html"})
    assert answer.status_code == 403


def test_a_job_that_ends_failed_is_announced_to_staff_streams(fresh_database_url: str) -> None:
    """procrastinate marks a job failed in its own SQL; the table's trigger announces it (and
    its retry), to staff streams only, once the change commits."""
    engine = create_engine(fresh_database_url)
    customer = uuid.uuid4()

    async def scenario() -> None:
        hub = Hub(libpq_url(fresh_database_url))
        async with hub.subscribe(None) as staff_stream, hub.subscribe(customer) as theirs:
            await asyncio.wait_for(hub.listening.wait(), 5)
            with Session(engine) as db:
                job = jobs.defer(db, "billing.verify_ledger")
                db.commit()
            with Session(engine) as db:  # running: not announced
                db.execute(text("UPDATE procrastinate_jobs SET status = 'doing' WHERE id = :id"),
                           {"id": job})  # fmt: skip
                db.commit()
            with Session(engine) as db:
                db.execute(
                    text("SELECT procrastinate_finish_job_v1(:id, 'failed', false)"), {"id": job}
                )
                db.commit()
                assert jobs.failed_count(db=db) == 1
            got = await asyncio.wait_for(staff_stream.queue.get(), 5)
            assert got == {"kind": "job", "user": None, "id": str(job)}
            with Session(engine) as db:  # an operator queues it again: the count goes down
                db.execute(text("UPDATE procrastinate_jobs SET status = 'todo' WHERE id = :id"),
                           {"id": job})  # fmt: skip
                db.commit()
            assert (await asyncio.wait_for(staff_stream.queue.get(), 5))["id"] == str(job)
            await asyncio.sleep(0.2)
            assert staff_stream.queue.empty() and theirs.queue.empty()
        await hub.stop()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()


def test_the_failed_job_trigger_does_not_pin_the_status_column(fresh_database_url: str) -> None:
    """procrastinate's own schema migrations have changed ``procrastinate_jobs.status``'s type
    (dropping and re-creating their own triggers around it); a trigger of ours that named the
    column (``UPDATE OF status``, a ``WHEN`` on it) would make PostgreSQL refuse that change,
    and the upgrade with it. Ours depends on the table only, never on one of its columns."""
    engine = create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            pinned = conn.execute(
                text(
                    "SELECT t.tgname, a.attname FROM pg_trigger AS t"
                    " JOIN pg_depend AS d ON d.classid = 'pg_trigger'::regclass"
                    "  AND d.objid = t.oid AND d.refobjsubid > 0"
                    " JOIN pg_attribute AS a ON a.attrelid = d.refobjid"
                    "  AND a.attnum = d.refobjsubid"
                    " WHERE t.tgname LIKE 'vmcloud%'"
                )
            ).all()
            ours = conn.execute(
                text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'vmcloud%'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert ours >= 1
    assert pinned == []
