"""Ordering an instance: ``/instances/new`` with its cost preview (computed on the server for
the chosen plan and cycle, so it is right without JavaScript; htmx refreshes it through
``/instances/new/preview``). Creating goes through the API's own flow (``billing.flows``) under
the form's nonce as the idempotency key, so a double submit creates one instance."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts import ssh_keys as saved_keys
from vmcloud.accounts.models import User
from vmcloud.billing import flows
from vmcloud.billing import service as billing
from vmcloud.catalog import service as catalog
from vmcloud.catalog.models import Product
from vmcloud.compute.schemas import InstanceCreate, InstanceRead
from vmcloud.core import idempotency
from vmcloud.core.errors import ProblemError
from vmcloud.core.pagination import MAX_LIMIT, PageParams
from vmcloud.db.session import DbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import DEFAULT_REGION, HOURLY_MIN_BALANCE
from vmcloud.web.customer.instances_views import UNITS
from vmcloud.web.forms import FormError, check_nonce, parse, settle
from vmcloud.web.render import fragment, price_text, redirect, render
from vmcloud.web.session import PanelUser

router = APIRouter(include_in_schema=False)

CYCLES = ("hourly", "monthly", "yearly")
Text = Annotated[str, Form(max_length=300)]


@dataclass
class Preview:
    plan: str
    cycle: str
    price: str
    first_charge: Decimal
    charged_now: bool
    monthly_cap: Decimal | None
    balance: Decimal
    balance_after: Decimal
    enough: bool
    minimum: Decimal
    currency: str


def _catalog(db: Session) -> dict[str, Any]:
    everything = PageParams(limit=MAX_LIMIT)
    products, _ = catalog.list_public_products(db=db, params=everything)
    regions, _ = catalog.list_regions(db=db, params=everything)
    images, _ = catalog.list_images(db=db, params=everything)
    return {"products": products, "regions": regions, "images": images}


def preview_of(db: Session, user: User, product: Product | None, cycle: str) -> Preview | None:
    """What ordering ``product`` on ``cycle`` costs now and leaves on the balance: monthly and
    yearly are charged the period's price at once; hourly is charged each hour in arrears (at
    most the monthly price in a month) and needs ``billing.hourly_min_balance`` to start."""
    if product is None or cycle not in product.pricing_json:
        return None
    balance, currency = billing.balance_of(db=db, user=user)
    price = Decimal(str(product.pricing_json[cycle]))
    monthly = product.pricing_json.get("monthly")
    hourly = cycle == "hourly"
    minimum = site_settings.get(db, HOURLY_MIN_BALANCE) if hourly else price
    return Preview(
        plan=product.name,
        cycle=cycle,
        price=f"{price_text(price)} {currency}/{UNITS[cycle]}",
        first_charge=price,
        charged_now=not hourly,
        monthly_cap=Decimal(str(monthly)) if hourly and monthly is not None else None,
        balance=balance,
        balance_after=balance - price,
        enough=balance >= minimum,
        minimum=minimum,
        currency=currency,
    )


def _product(products: list[Product], ref: str) -> Product | None:
    return next((p for p in products if p.slug == ref), products[0] if products else None)


def _page(
    request: Request,
    db: Session,
    user: User,
    form: dict[str, str],
    problem: FormError | None = None,
    chosen_keys: list[str] | None = None,
) -> Response:
    choices = _catalog(db)
    keys = saved_keys.list_keys(db=db, user=user)
    product = _product(choices["products"], form.get("product", ""))
    form.setdefault("product", product.slug if product else "")
    form.setdefault("billing_cycle", "monthly")
    form.setdefault("region", site_settings.get(db, DEFAULT_REGION))
    images = choices["images"]
    form.setdefault("image", images[0].slug if images else "")
    return render(
        request,
        "instances/new.html",
        {
            **choices,
            "section": "instances",
            "cycles": CYCLES,
            "form": form,
            "problem": problem,
            "preview": preview_of(db, user, product, form["billing_cycle"]),
            "unverified": not user.email_verified,
            "price_text": price_text,
            "saved_keys": keys,
            # Every saved key is ticked until the form is posted with its own choice.
            "chosen_keys": {str(k.id) for k in keys} if chosen_keys is None else set(chosen_keys),
        },
        status=problem.status if problem else 200,
        headers=problem.headers if problem else None,
    )


@router.get("/instances/new")
def order_page(request: Request, db: DbSession, user: PanelUser) -> Response:
    return _page(request, db, user, {})


@router.post("/instances/new/preview")
def order_preview(
    request: Request,
    db: DbSession,
    user: PanelUser,
    product: Text = "",
    billing_cycle: Text = "",
) -> Response:
    """The cost preview alone, for htmx to swap in when the plan or cycle changes."""
    choices = _catalog(db)
    chosen = _product(choices["products"], product)
    preview = preview_of(db, user, chosen, billing_cycle)
    return Response(fragment("instances/_preview.html", preview=preview), media_type="text/html")


def _body(form: dict[str, str], key_ids: list[str]) -> InstanceCreate:
    keys = [line.strip() for line in form["ssh_keys"].splitlines() if line.strip()]
    values: dict[str, Any] = {
        "name": form["name"],
        "product": form["product"],
        "region": form["region"],
        "image": form["image"],
        "billing_cycle": form["billing_cycle"],
        "hostname": form["hostname"].strip() or None,
        "ssh_keys": keys,
        "ssh_key_ids": key_ids,
        "user_data": form["user_data"] or None,
    }
    return parse(InstanceCreate, values)


@router.post("/instances/new")
def order(
    request: Request,
    db: DbSession,
    user: PanelUser,
    name: Text = "",
    product: Text = "",
    region: Text = "",
    image: Text = "",
    billing_cycle: Text = "",
    hostname: Text = "",
    ssh_keys: Annotated[str, Form(max_length=20_000)] = "",
    ssh_key_ids: Annotated[list[str] | None, Form()] = None,
    keys_shown: Text = "",
    user_data: Annotated[str, Form(max_length=70_000)] = "",
    nonce: Text = "",
    intent: Text = "create",
) -> Response:
    form = {
        "name": name,
        "product": product,
        "region": region,
        "image": image,
        "billing_cycle": billing_cycle,
        "hostname": hostname,
        "ssh_keys": ssh_keys,
        "user_data": user_data,
    }
    # The saved keys ticked; None (all ticked) when the form showed none to tick.
    chosen = list(ssh_key_ids or []) if keys_shown else None
    if intent == "preview":
        return _page(request, db, user, form, chosen_keys=chosen)
    if not user.email_verified:
        problem = FormError(message="Confirm your email address before ordering.", status=403)
        return _page(request, db, user, form, problem, chosen)
    try:
        check_nonce(nonce)
    except FormError as problem:
        return _page(request, db, user, form, problem, chosen)
    try:
        body = _body(form, chosen or [])
        created = idempotency.once(
            db=db,
            user_id=user.id,
            key=f"panel:{nonce}",
            endpoint="POST /instances",
            body=body,
            status=202,
            produce=lambda: InstanceRead.model_validate(
                flows.order_instance(db=db, owner=user, body=body)
            ),
        )
    except FormError as problem:
        return _page(request, db, user, form, problem, chosen)
    except ProblemError as exc:
        return _page(request, db, user, form, settle(db, exc), chosen)
    if isinstance(created, InstanceRead):
        instance_id = created.id
    else:  # a replay of the same submit: the instance it created
        instance_id = uuid.UUID(json.loads(bytes(created.body))["id"])
    return redirect(request, f"/instances/{instance_id}", flash="Your instance is on its way.")
