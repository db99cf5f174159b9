"""``/admin/products``: the plans on sale. Staff read them; admins create, edit, reorder and
archive them through the catalogue's own services (``catalog.service``), with the API's input
schemas (``ProductCreate``, ``ProductUpdate``) behind a form of real inputs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Form, Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.models import User
from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Product
from vmcloud.catalog.schemas import ProductCreate, ProductRead, ProductUpdate
from vmcloud.compute import service as compute
from vmcloud.core import idempotency
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.web.admin.access import AdminPanelUser, StaffPanelUser, page
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import redirect

router = APIRouter(include_in_schema=False)

LIST = "/admin/products"
Text = Annotated[str, Form(max_length=300)]
LongText = Annotated[str, Form(max_length=20_000)]
CYCLES = ("hourly", "monthly", "yearly")
SPECS = ("vcpus", "memory_mb", "disk_gb", "bandwidth_gb")
# The form's input of each nested member of the schema (errors go next to it).
NESTED = {"specs_json": {s: s for s in SPECS}, "pricing_json": {c: f"price_{c}" for c in CYCLES}}
TOP = {"features_json": "features", "specs_json": "vcpus", "pricing_json": "price_monthly"}


def _field(loc: tuple[int | str, ...]) -> str:
    top = str(loc[0])
    if len(loc) > 1 and str(loc[1]) in NESTED.get(top, {}):
        return NESTED[top][str(loc[1])]
    return TOP.get(top, top)


class PlanForm:
    """The plan form's inputs, as typed."""

    def __init__(
        self,
        name: Text = "",
        slug: Text = "",
        description: LongText = "",
        category: Text = "",
        vcpus: Text = "",
        memory_mb: Text = "",
        disk_gb: Text = "",
        bandwidth_gb: Text = "",
        price_hourly: Text = "",
        price_monthly: Text = "",
        price_yearly: Text = "",
        features: LongText = "",
        status: Text = "active",
        sort_order: Text = "0",
    ) -> None:
        self.values = {
            "name": name,
            "slug": slug.strip(),
            "description": description,
            "category": category,
            "vcpus": vcpus.strip(),
            "memory_mb": memory_mb.strip(),
            "disk_gb": disk_gb.strip(),
            "bandwidth_gb": bandwidth_gb.strip(),
            "price_hourly": price_hourly.strip(),
            "price_monthly": price_monthly.strip(),
            "price_yearly": price_yearly.strip(),
            "features": features,
            "status": status,
            "sort_order": sort_order.strip() or "0",
        }

    def body(self) -> dict[str, Any]:
        """The API's body for these inputs: empty means absent (no bandwidth limit, no price
        for that cycle, no description); features one per line."""
        v = self.values
        return {
            "name": v["name"],
            "slug": v["slug"],
            "description": v["description"].strip() or None,
            "category": v["category"].strip() or None,
            "specs_json": {s: v[s] or None for s in SPECS},
            "pricing_json": {c: v[f"price_{c}"] or None for c in CYCLES},
            "features_json": [line.strip() for line in v["features"].splitlines() if line.strip()],
            "status": v["status"],
            "sort_order": v["sort_order"],
        }


def form_of(product: Product) -> dict[str, str]:
    """A plan's stored values as the form's inputs."""
    specs, prices = product.specs_json or {}, product.pricing_json or {}
    return {
        "name": product.name,
        "slug": product.slug,
        "description": product.description or "",
        "category": product.category or "",
        **{s: str(specs.get(s) or "") for s in SPECS},
        **{f"price_{c}": str(prices.get(c) or "") for c in CYCLES},
        "features": "\n".join(product.features_json or []),
        "status": product.status or "active",
        "sort_order": str(product.sort_order or 0),
    }


# -- the list ---------------------------------------------------------------------------------


def _plans(db: Session) -> list[Product]:
    """Every plan, in the catalogue's order (a catalogue is dozens, not thousands: the
    admin list reads them in pages of the API's largest size)."""
    plans: list[Product] = []
    cursor: str | None = None
    while True:
        params = PageParams(cursor=cursor, limit=MAX_LIMIT)
        items, cursor = catalog.list_products(db=db, params=params)
        plans.extend(items)
        if cursor is None:
            return plans


@router.get("/admin/products")
def products_page(request: Request, db: DbSession, user: StaffPanelUser) -> Response:
    plans = _plans(db)
    using = compute.counts_by_product(db=db, product_ids=[p.id for p in plans])
    context = {"plans": plans, "using": using, "cycles": CYCLES}
    return page(request, "admin/products/index.html", user, context, area="products")


@router.post("/admin/products/{product_id}/move")
def move_product(
    request: Request, db: DbSession, _: AdminPanelUser, product_id: uuid.UUID, direction: Text = ""
) -> Response:
    step = {"up": -1, "down": 1}.get(direction)
    product = catalog.get_product(db=db, ref=str(product_id))  # 404 before anything else
    if step is None:
        return redirect(request, LIST, flash="Choose up or down.", level="error")
    catalog.move_product(db=db, ref=str(product.id), step=step)
    return redirect(request, LIST, flash=f"{product.name} moved {direction}.")


@router.post("/admin/products/{product_id}/archive")
def archive_product(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    product_id: uuid.UUID,
    confirm_name: Text = "",
) -> Response:
    product = catalog.get_product(db=db, ref=str(product_id))
    name = product.name
    if confirm_name != name:
        problem = FormError(
            fields={"confirm_name": "type the plan's name"},
            message=f"Type {name!r} to archive this plan.",
        )
        return _edit_page(request, db, user, product, form_of(product), archive_problem=problem)
    archived = catalog.delete_product(db=db, ref=str(product.id))
    said = "archived: instances use it" if archived else "deleted: no instance ever used it"
    return redirect(request, LIST, flash=f"{name} {said}.")


# -- create and edit --------------------------------------------------------------------------


def _edit_page(
    request: Request,
    db: Session,
    user: User,
    product: Product | None,
    form: dict[str, str],
    problem: FormError | None = None,
    archive_problem: FormError | None = None,
) -> Response:
    failed = problem or archive_problem
    context = {
        "product": product,
        "form": form,
        "problem": problem,
        "archive_problem": archive_problem,
        "using": compute.counts_by_product(db=db, product_ids=[product.id]).get(product.id, 0)
        if product
        else 0,
    }
    return page(
        request,
        "admin/products/edit.html",
        user,
        context,
        area="products",
        status=failed.status if failed else 200,
    )


@router.get("/admin/products/new")
def new_product_page(request: Request, db: DbSession, user: AdminPanelUser) -> Response:
    return _edit_page(request, db, user, None, PlanForm().values)


@router.post("/admin/products/new")
def create_product(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    form: Annotated[PlanForm, Depends()],
    nonce: Text = "",
) -> Response:
    try:
        check_nonce(nonce)
        body = parse(ProductCreate, form.body(), lax=True, locate=_field)
        done = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /admin/products",
            body=body,
            status=201,
            produce=lambda: ProductRead.model_validate(catalog.create_product(db=db, body=body)),
        )
    except FormError as problem:
        return _edit_page(request, db, user, None, form.values, problem)
    except ProblemError as exc:
        return _edit_page(request, db, user, None, form.values, settle(db, exc, field_map=TOP))
    if not isinstance(done, ProductRead):  # the same form posted again
        return redirect(request, LIST, flash="This plan was already created.", level="info")
    return redirect(request, LIST, flash=f"{done.name} created.")


@router.get("/admin/products/{product_id}")
def product_page(
    request: Request, db: DbSession, user: StaffPanelUser, product_id: uuid.UUID
) -> Response:
    product = catalog.get_product(db=db, ref=str(product_id))
    return _edit_page(request, db, user, product, form_of(product))


@router.post("/admin/products/{product_id}")
def update_product(
    request: Request,
    db: DbSession,
    user: AdminPanelUser,
    product_id: uuid.UUID,
    form: Annotated[PlanForm, Depends()],
) -> Response:
    product = catalog.get_product(db=db, ref=str(product_id))
    try:
        body = parse(ProductUpdate, form.body(), lax=True, locate=_field)
        catalog.update_product(db=db, ref=str(product.id), body=body)
    except FormError as problem:
        return _edit_page(request, db, user, product, form.values, problem)
    except ProblemError as exc:
        refused = settle(db, exc, field_map=TOP)
        product = catalog.get_product(db=db, ref=str(product_id))
        return _edit_page(request, db, user, product, form.values, refused)
    return redirect(request, LIST, flash=f"{body.name} saved.")
