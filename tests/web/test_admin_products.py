"""Staff plans (``/admin/products``): the list, the create/edit form of real inputs with the
API's validation next to each field, reordering and archiving."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.web.conftest import csrf_of, log_in
from vmcloud.audit.models import AuditLog
from vmcloud.billing import flows
from vmcloud.catalog.models import Product
from vmcloud.compute.schemas import InstanceCreate


def staff(panel: TestClient, db: Session, role: str = "admin") -> str:
    user = make_user(db, role=role)
    log_in(panel, user.username, PASSWORD)
    return csrf_of(panel.get("/account").text)


def plan_form(**overrides: str) -> dict[str, str]:
    slug = f"panel-plan-{uuid.uuid4().hex[:8]}"
    form = {
        "name": "Panel Plan",
        "slug": slug,
        "description": "",
        "category": "",
        "vcpus": "2",
        "memory_mb": "2048",
        "disk_gb": "40",
        "bandwidth_gb": "",
        "price_hourly": "0.006",
        "price_monthly": "4.00",
        "price_yearly": "",
        "features": "IPv4\n\n  NVMe  \n",
        "status": "active",
        "sort_order": "5",
        "nonce": uuid.uuid4().hex,
    }
    form.update(overrides)
    return form


def plans_named(db: Session, slug: str) -> int:
    return db.scalar(select(func.count()).select_from(Product).where(Product.slug == slug)) or 0


def post(panel: TestClient, url: str, token: str, form: dict[str, Any]) -> Any:
    return panel.post(url, data={**form, "csrftoken": token})


def test_an_admin_creates_a_plan_from_real_inputs(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    assert 'href="/admin/products/new"' in panel.get("/admin/products").text
    assert panel.get("/admin/products/new").status_code == 200
    form = plan_form()
    answer = post(panel, "/admin/products/new", token, form)
    assert answer.status_code == 303, answer.text[:3000]
    plan = db.scalars(select(Product).where(Product.slug == form["slug"])).one()
    assert plan.specs_json == {"vcpus": 2, "memory_mb": 2048, "disk_gb": 40}
    assert plan.pricing_json == {"hourly": "0.006", "monthly": "4.00"}
    assert plan.features_json == ["IPv4", "NVMe"]
    assert plan.description is None and plan.sort_order == 5
    audit = db.scalars(select(AuditLog.action).where(AuditLog.entity_id == plan.id)).all()
    assert audit == ["product.create"]
    listing = panel.get("/admin/products").text
    assert f'id="plan-{plan.id}"' in listing and "0.006/h" in listing and "4.00/mo" in listing


def test_the_same_form_posted_twice_creates_one_plan(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    form = plan_form()
    assert post(panel, "/admin/products/new", token, form).status_code == 303
    again = post(panel, "/admin/products/new", token, form)
    assert again.status_code == 303
    assert plans_named(db, form["slug"]) == 1


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("price_monthly", "4.001", "price_monthly"),
        ("price_monthly", "-4", "price_monthly"),
        ("price_monthly", "٤.00", "price_monthly"),  # Arabic-Indic digits
        ("price_hourly", "0.0000001", "price_hourly"),
        ("price_yearly", "1e3", "price_yearly"),
        ("vcpus", "two", "vcpus"),
        ("vcpus", "0", "vcpus"),
        ("memory_mb", "99999999999999999999", "memory_mb"),
        ("bandwidth_gb", "-1", "bandwidth_gb"),
        ("slug", "Not A Slug", "slug"),
        ("name", "   ", "name"),
        ("status", "bogus", "status"),
        ("sort_order", "first", "sort_order"),
        ("features", "x" * 201, "features"),
    ],
)
def test_an_invalid_input_shows_its_error_next_to_the_field(
    panel: TestClient, db: Session, field: str, value: str, where: str
) -> None:
    token = staff(panel, db)
    form = plan_form(**{field: value})
    answer = post(panel, "/admin/products/new", token, form)
    assert answer.status_code == 422, answer.text[:2000]
    assert f'id="e-{where}" class="field-error"' in answer.text
    assert f'id="f-{where}"' in answer.text
    assert plans_named(db, form["slug"]) == 0


def test_a_plan_needs_a_price(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    form = plan_form(price_hourly="", price_monthly="", price_yearly="")
    answer = post(panel, "/admin/products/new", token, form)
    assert answer.status_code == 422
    assert "at least one of hourly, monthly, yearly" in answer.text
    assert 'id="e-price_monthly"' in answer.text


def test_a_slug_in_use_is_a_conflict_on_the_slug(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    taken = make_product(db)
    answer = post(panel, "/admin/products/new", token, plan_form(slug=taken.slug))
    assert answer.status_code == 409
    assert 'id="e-slug" class="field-error">already in use' in answer.text


def test_an_admin_edits_a_plan(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    plan = make_product(db)
    page = panel.get(f"/admin/products/{plan.id}").text
    assert f'value="{plan.slug}"' in page and "0.017123" in page
    form = plan_form(slug=plan.slug, name="Renamed", price_yearly="99.00", status="hidden")
    answer = post(panel, f"/admin/products/{plan.id}", token, form)
    assert answer.status_code == 303, answer.text[:2000]
    db.refresh(plan)
    assert plan.name == "Renamed" and plan.status == "hidden"
    assert plan.pricing_json == {"hourly": "0.006", "monthly": "4.00", "yearly": "99.00"}

    bad = post(panel, f"/admin/products/{plan.id}", token, plan_form(slug=plan.slug, vcpus="-2"))
    assert bad.status_code == 422 and 'id="e-vcpus"' in bad.text
    assert 'value="-2"' in bad.text  # what was typed stays
    db.refresh(plan)
    assert plan.specs_json["vcpus"] == 2


def test_an_edit_taking_another_plans_slug_changes_nothing(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    plan, other = make_product(db), make_product(db)
    answer = post(panel, f"/admin/products/{plan.id}", token, plan_form(slug=other.slug))
    assert answer.status_code == 409 and 'id="e-slug"' in answer.text
    db.expire_all()
    assert db.get(Product, plan.id).name != "Panel Plan"  # type: ignore[union-attr]


def test_support_reads_plans_but_gets_no_controls(panel: TestClient, db: Session) -> None:
    plan = make_product(db)
    token = staff(panel, db, role="support")
    listing = panel.get("/admin/products").text
    assert f'id="plan-{plan.id}"' in listing
    assert "/admin/products/new" not in listing and "/move" not in listing
    page = panel.get(f"/admin/products/{plan.id}")
    assert page.status_code == 200 and "<fieldset disabled>" in page.text
    assert "Create plan" not in page.text and "/archive" not in page.text
    refused = post(panel, f"/admin/products/{plan.id}", token, plan_form(slug=plan.slug))
    assert refused.status_code == 403


def _order(db: Session) -> list[uuid.UUID]:
    return list(db.scalars(select(Product.id).order_by(Product.sort_order, Product.id)))


def test_moving_a_plan_swaps_it_with_its_neighbour(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    tied = sorted([make_product(db, sort_order=-900).id, make_product(db, sort_order=-900).id])
    last = make_product(db, sort_order=-800).id
    rest = _order(db)[3:]
    assert _order(db)[:3] == [*tied, last]

    answer = post(panel, f"/admin/products/{last}/move", token, {"direction": "up"})
    assert answer.status_code == 303
    db.expire_all()
    assert _order(db) == [tied[0], last, tied[1], *rest]
    orders = list(db.scalars(select(Product.sort_order)))
    assert len(set(orders)) == len(orders)  # the tie is gone: every plan has its own place

    post(panel, f"/admin/products/{tied[0]}/move", token, {"direction": "up"})  # already first
    post(panel, f"/admin/products/{last}/move", token, {"direction": "down"})
    db.expire_all()
    assert _order(db) == [*tied, last, *rest]

    sideways = post(panel, f"/admin/products/{last}/move", token, {"direction": "left"})
    assert sideways.status_code == 303
    db.expire_all()
    assert _order(db) == [*tied, last, *rest]
    assert "Choose up or down" in panel.get("/admin/products").text


def test_archive_needs_the_name_and_keeps_a_used_plan(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    make_node(db, vcpus=64, memory_mb=65536, disk_gb=1000)
    make_pool(db, "198.18.71.0/24")
    used = make_product(
        db,
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"monthly": "4.00"},
    )
    owner = make_user(db, balance="50.00")
    flows.order_instance(
        db=db,
        owner=owner,
        body=InstanceCreate(
            name="keeps", product=used.slug, region="local", image="tiny-linux",
            billing_cycle="monthly",
        ),
    )  # fmt: skip
    assert ">1</td>" in panel.get("/admin/products").text.split(f'id="plan-{used.id}"')[1]

    wrong = post(panel, f"/admin/products/{used.id}/archive", token, {"confirm_name": "nope"})
    assert wrong.status_code == 422 and "to archive this plan" in wrong.text
    db.refresh(used)
    assert used.status == "active"
    done = post(panel, f"/admin/products/{used.id}/archive", token, {"confirm_name": used.name})
    assert done.status_code == 303
    db.refresh(used)
    assert used.status == "archived"

    unused = make_product(db)
    gone = post(panel, f"/admin/products/{unused.id}/archive", token, {"confirm_name": unused.name})
    assert gone.status_code == 303
    assert plans_named(db, unused.slug) == 0


def test_an_unknown_plan_is_404(panel: TestClient, db: Session) -> None:
    token = staff(panel, db)
    missing = uuid.uuid4()
    assert panel.get(f"/admin/products/{missing}").status_code == 404
    assert post(panel, f"/admin/products/{missing}", token, plan_form()).status_code == 404
    moved = post(panel, f"/admin/products/{missing}/move", token, {"direction": "up"})
    assert moved.status_code == 404
    assert panel.get("/admin/products/not-an-id").status_code in (404, 422)


EMPTIED = ("name", "slug", "vcpus", "memory_mb", "disk_gb", "price_hourly", "price_monthly")
EMPTIED += ("status", "sort_order", "nonce")


@pytest.mark.parametrize(
    "form",
    [
        dict.fromkeys(EMPTIED, ""),  # every input left empty
        {"name": "x" * 301},  # longer than any input takes
        {"description": "d" * 20_001},
        {"vcpus": "1" * 300, "memory_mb": "\x00", "price_monthly": "NaN"},
        {"price_monthly": "Infinity", "price_hourly": "1_000", "sort_order": "9" * 30},
        {"features": "\n".join(["f"] * 51)},  # more than 50 features
    ],
)
def test_garbage_is_refused_with_a_4xx_and_changes_nothing(
    panel: TestClient, db: Session, form: dict[str, str]
) -> None:
    token = staff(panel, db)
    plan = make_product(db)
    before = db.scalar(select(func.count()).select_from(Product))
    for url in ("/admin/products/new", f"/admin/products/{plan.id}"):
        answer = post(panel, url, token, {**plan_form(), **form})
        assert 400 <= answer.status_code < 500, (url, answer.status_code, answer.text[:500])
        bare = panel.post(url, data={"csrftoken": token})  # no field at all
        assert 400 <= bare.status_code < 500, (url, bare.status_code, bare.text[:500])
    assert db.scalar(select(func.count()).select_from(Product)) == before
    db.refresh(plan)
    assert plan.name != "Panel Plan"
