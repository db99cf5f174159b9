"""Catalogue operations: products (VM plans), regions and images."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vmcloud.audit import service as audit
from vmcloud.catalog.models import Image, Product, Region
from vmcloud.catalog.schemas import ProductCreate, ProductUpdate
from vmcloud.core.errors import ConflictError, NotFoundError
from vmcloud.core.pagination import PageParams, paginate
from vmcloud.db.session import flush_or_raise

PUBLIC_STATUSES = ("active", "hidden")  # hidden: unlisted, still reachable by id or slug


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref)
    except ValueError:
        return None


def _by_ref(ref: str) -> Any:
    ref_id = _as_uuid(ref)
    return Product.id == ref_id if ref_id else Product.slug == ref


def list_public_products(*, db: Session, params: PageParams) -> tuple[list[Product], str | None]:
    stmt = select(Product).where(Product.status == "active")
    return paginate(
        db, stmt, order_by=(Product.sort_order, Product.id), params=params, descending=False
    )


def get_public_product(*, db: Session, ref: str) -> Product:
    product = db.scalar(select(Product).where(_by_ref(ref), Product.status.in_(PUBLIC_STATUSES)))
    if product is None:
        raise NotFoundError("There is no such plan.")
    return product


def list_products(
    *, db: Session, params: PageParams, status: str | None = None
) -> tuple[list[Product], str | None]:
    stmt = select(Product)
    if status:
        stmt = stmt.where(Product.status == status)
    return paginate(
        db, stmt, order_by=(Product.sort_order, Product.id), params=params, descending=False
    )


def get_product(*, db: Session, ref: str, lock: bool = False) -> Product:
    stmt = select(Product).where(_by_ref(ref))
    product = db.scalar(stmt.with_for_update() if lock else stmt)
    if product is None:
        raise NotFoundError("There is no such plan.")
    return product


def _slug_taken() -> ConflictError:
    return ConflictError(
        "Another plan already uses this slug.",
        errors=[{"field": "slug", "message": "already in use"}],
    )


def create_product(*, db: Session, body: ProductCreate) -> Product:
    if db.scalar(select(Product.id).where(Product.slug == body.slug)) is not None:
        raise _slug_taken()
    product = Product(**_columns(body.model_dump(mode="json")))
    db.add(product)
    flush_or_raise(db, _slug_taken())
    return product


def update_product(*, db: Session, ref: str, body: ProductUpdate) -> Product:
    product = get_product(db=db, ref=ref, lock=True)
    changes = _columns(body.model_dump(mode="json", include=body.model_fields_set))
    if "slug" in changes and changes["slug"] != product.slug:
        clash = db.scalar(select(Product.id).where(Product.slug == changes["slug"]))
        if clash is not None:
            raise _slug_taken()
    for field, value in changes.items():
        setattr(product, field, value)
    flush_or_raise(db, _slug_taken())
    return product


def delete_product(*, db: Session, ref: str) -> Product | None:
    """Delete a plan nobody ever ran; archive one that instances use or used (their history and
    billing keep pointing at it). Returns the archived plan, or ``None`` when deleted."""
    product = get_product(db=db, ref=ref, lock=True)
    try:
        with db.begin_nested():
            db.delete(product)
            db.flush()
    except IntegrityError:
        # Instances (live or deleted) point at it: keep it, off sale.
        if product.status != "archived":
            audit.label(product, "product.archive")
            product.status = "archived"
            db.flush()
        return product
    return None


def move_product(*, db: Session, ref: str, step: int) -> Product:
    """Move a plan ``step`` places (-1 up, +1 down) in the order the catalogue lists plans
    (``sort_order``, then id). Every plan is numbered again in tens, so plans that shared a
    ``sort_order`` (0 by default) get an order of their own; only changed rows are written
    (and audited). Locks every plan: two reorders run one after the other."""
    product = get_product(db=db, ref=ref)
    order = list(
        db.scalars(select(Product).order_by(Product.sort_order, Product.id).with_for_update())
    )
    at = order.index(product)
    to = min(max(at + step, 0), len(order) - 1)
    order.insert(to, order.pop(at))
    for index, item in enumerate(order):
        if item.sort_order != index * 10:
            item.sort_order = index * 10
    audit.label(product, "product.reorder")
    db.flush()
    return product


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``None`` members of the spec and price objects: absent, not null, in JSONB."""
    for key in ("specs_json", "pricing_json"):
        if isinstance(values.get(key), dict):
            values[key] = {k: v for k, v in values[key].items() if v is not None}
    return values


def list_regions(*, db: Session, params: PageParams) -> tuple[list[Region], str | None]:
    stmt = select(Region).where(Region.status == "active")
    return paginate(
        db, stmt, order_by=(Region.sort_order, Region.id), params=params, descending=False
    )


def list_images(*, db: Session, params: PageParams) -> tuple[list[Image], str | None]:
    stmt = select(Image).where(Image.status == "active")
    return paginate(
        db, stmt, order_by=(Image.sort_order, Image.id), params=params, descending=False
    )


def find_orderable_product(*, db: Session, ref: str) -> Product | None:
    return db.scalar(select(Product).where(_by_ref(ref), Product.status.in_(PUBLIC_STATUSES)))


def find_active_region(*, db: Session, ref: str) -> Region | None:
    ref_id = _as_uuid(ref)
    where = Region.id == ref_id if ref_id else Region.slug == ref
    return db.scalar(select(Region).where(where, Region.status == "active"))


def find_active_image(*, db: Session, ref: str) -> Image | None:
    ref_id = _as_uuid(ref)
    where = Image.id == ref_id if ref_id else Image.slug == ref
    return db.scalar(select(Image).where(where, Image.status == "active"))


def get_image(*, db: Session, image_id: uuid.UUID) -> Image | None:
    return db.get(Image, image_id)


def get_product_by_id(*, db: Session, product_id: uuid.UUID) -> Product | None:
    return db.get(Product, product_id)
