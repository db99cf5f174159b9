"""What the instance pages show, read through the compute, billing, catalog and audit services
and shaped for the templates: one instance as a row or a page, its activity, its cost, and the
live fragments the streams send."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import flows, subscriptions
from vmcloud.billing import service as billing
from vmcloud.catalog import service as catalog
from vmcloud.compute import service as compute
from vmcloud.compute.models import Instance
from vmcloud.core.errors import NotFoundError
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY, LOW_BALANCE_WARNING
from vmcloud.web.render import fragment, price_text

UNITS = {"hourly": "h", "monthly": "mo", "yearly": "yr"}


@dataclass
class InstanceView:
    id: uuid.UUID
    name: str
    status: str
    ip: str | None
    hostname: str | None
    region: str
    image: str
    plan: str
    specs: dict[str, Any]
    cycle: str | None
    cost: str
    error_reason: str | None
    resources: dict[str, Any] | None
    created_at: datetime | None
    actions: dict[str, bool] = field(default_factory=dict)


def view_of(db: Session, instance: Instance, currency: str) -> InstanceView:
    product = catalog.get_product_by_id(db=db, product_id=instance.product_id)
    pricing = product.pricing_json if product else {}
    cycle = instance.billing_cycle
    price = pricing.get(cycle) if cycle else None
    cost = f"{price_text(price)} {currency}/{UNITS[cycle]}" if price is not None and cycle else "—"
    status = instance.status or "pending"
    actions = {name: status in allowed for name, (allowed, _) in compute.ACTIONS.items()}
    actions["delete"] = status not in compute.NOT_DELETABLE
    return InstanceView(
        id=instance.id,
        name=instance.name,
        status=status,
        ip=str(instance.ip_address).split("/")[0] if instance.ip_address else None,
        hostname=instance.hostname,
        region=instance.region.name if instance.region else "—",
        image=instance.image.name if instance.image else "—",
        plan=product.name if product else "—",
        specs=product.specs_json if product else {},
        cycle=cycle,
        cost=cost,
        error_reason=instance.error_reason,
        resources=instance.resources_json,
        created_at=instance.created_at,
        actions=actions,
    )


def currency_of(db: Session) -> str:
    return site_settings.get(db, CURRENCY)


def list_views(
    db: Session, user_id: uuid.UUID, status: str | None, search: str | None
) -> list[InstanceView]:
    currency = currency_of(db)
    found = compute.list_user_instances(db=db, user_id=user_id, status=status, search=search)
    return [view_of(db, instance, currency) for instance in found]


def low_balance(db: Session, user: User) -> tuple[Decimal, str] | None:
    """The balance and currency when it is under the warning line of setting
    ``billing.low_balance_warning`` (the line the low-balance email uses; 0 turns it off)."""
    balance, currency = billing.balance_of(db=db, user=user)
    line = site_settings.get(db, LOW_BALANCE_WARNING)
    return (balance, currency) if line > 0 and balance < line else None


@dataclass
class Activity:
    at: datetime | None
    text: str


LABELS = {
    "instance.create": "Ordered",
    "instance.start": "Start requested",
    "instance.stop": "Stop requested",
    "instance.reboot": "Reboot requested",
    "instance.delete": "Delete requested",
    "instance.suspend": "Suspended for an unpaid balance",
    "instance.resume": "Resumed after payment",
}


def activity_of(db: Session, instance_id: uuid.UUID) -> list[Activity]:
    """The instance's audit rows as the customer may read them: what happened and the status
    it moved to (never the node, the actor's address or other staff details)."""
    rows = audit.trail_of(db, entity_type="instance", entity_id=instance_id, limit=15)
    items: list[Activity] = []
    for row in rows:
        old, new = row.old_values or {}, row.new_values or {}
        parts = [LABELS[row.action]] if row.action in LABELS else []
        if "name" in new and "name" in old:
            parts.append(f"renamed {old['name']} → {new['name']}")
        if "status" in new and "status" in old:
            parts.append(f"{old['status']} → {new['status']}")
        if parts:
            items.append(Activity(at=row.timestamp, text="; ".join(parts)))
    return items


@dataclass
class Billing:
    cycle: str | None
    next_charge: str | None
    next_at: datetime | None
    renews: bool
    refund: Decimal
    currency: str


def billing_of(db: Session, instance: Instance, currency: str) -> Billing:
    sub = subscriptions.live_for_instance(db=db, instance_id=instance.id, lock=False)
    refund = flows.deletion_refund(db=db, instance=instance)
    if sub is None:
        return Billing(instance.billing_cycle, None, None, False, refund, currency)
    if sub.type == "hourly":
        amount = f"{price_text(sub.rate or sub.price)} {currency} per hour"
    else:
        amount = f"{price_text(sub.price)} {currency}"
    return Billing(sub.type, amount, sub.period_end, bool(sub.auto_renew), refund, currency)


def owned(db: Session, user: User, instance_id: uuid.UUID, *, change: bool = False) -> Instance:
    """The instance as the API's loaders give it: 404 for another user's."""
    if change:
        return compute.get_changeable_instance(db=db, instance_id=instance_id, user=user)
    return compute.get_visible_instance(db=db, instance_id=instance_id, user=user)


# -- live fragments ------------------------------------------------------------------------


def list_fragment(
    db: Session, user: User, status: str | None, search: str | None, csrf: str
) -> str:
    """The list's whole live region (rows or the empty state), out of band."""
    return fragment(
        "instances/_list.html",
        instances=list_views(db, user.id, status, search),
        filtered=bool(status or search),
        csrf=csrf,
        oob=True,
    )


def banner_fragment(db: Session, user: User) -> str:
    return fragment("instances/_banner.html", low=low_balance(db, user), oob=True)


def detail_fragment(db: Session, user: User, instance_id: uuid.UUID, csrf: str) -> str:
    """The detail page's live parts: badge, power buttons, address, usage, activity and the
    suspension banner; an instance that is gone shows as deleted."""
    try:
        instance = owned(db, user, instance_id)
    except NotFoundError:
        return fragment("instances/_detail_live.html", view=None, oob=True, csrf=csrf)
    return fragment(
        "instances/_detail_live.html",
        view=view_of(db, instance, currency_of(db)),
        activity=activity_of(db, instance.id),
        csrf=csrf,
        oob=True,
    )
