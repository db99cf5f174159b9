"""Routes: the public catalogue and its administration."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from vmcloud.accounts.deps import AdminUser, StaffUser
from vmcloud.catalog import service
from vmcloud.catalog.schemas import (
    ImageRead,
    ProductCreate,
    ProductRead,
    ProductUpdate,
    RegionRead,
)
from vmcloud.core.pagination import Page, PageQuery, page_of
from vmcloud.db.session import DbSession

public = APIRouter(tags=["catalogue"])
admin = APIRouter(prefix="/admin/products", tags=["admin: catalogue"])


@public.get("/products", response_model=Page[ProductRead], summary="Plans on sale")
def list_products(db: DbSession, page: PageQuery) -> Page[ProductRead]:
    items, cursor = service.list_public_products(db=db, params=page)
    return page_of(ProductRead, items, cursor)


@public.get("/products/{ref}", response_model=ProductRead, summary="A plan by id or slug")
def get_product(ref: str, db: DbSession) -> ProductRead:
    return ProductRead.model_validate(service.get_public_product(db=db, ref=ref))


@public.get("/regions", response_model=Page[RegionRead], summary="Where VMs can run")
def list_regions(db: DbSession, page: PageQuery) -> Page[RegionRead]:
    items, cursor = service.list_regions(db=db, params=page)
    return page_of(RegionRead, items, cursor)


@public.get("/images", response_model=Page[ImageRead], summary="Operating systems to install")
def list_images(db: DbSession, page: PageQuery) -> Page[ImageRead]:
    items, cursor = service.list_images(db=db, params=page)
    return page_of(ImageRead, items, cursor)


@admin.get("", response_model=Page[ProductRead], summary="All plans, any status")
def admin_list_products(
    db: DbSession,
    _: StaffUser,
    page: PageQuery,
    status: Annotated[Literal["active", "hidden", "archived"] | None, Query()] = None,
) -> Page[ProductRead]:
    items, cursor = service.list_products(db=db, params=page, status=status)
    return page_of(ProductRead, items, cursor)


@admin.get("/{ref}", response_model=ProductRead)
def admin_get_product(ref: str, db: DbSession, _: StaffUser) -> ProductRead:
    return ProductRead.model_validate(service.get_product(db=db, ref=ref))


@admin.post("", response_model=ProductRead, status_code=status.HTTP_201_CREATED)
def create_product(body: ProductCreate, db: DbSession, _: AdminUser) -> ProductRead:
    return ProductRead.model_validate(service.create_product(db=db, body=body))


@admin.patch("/{ref}", response_model=ProductRead)
def update_product(ref: str, body: ProductUpdate, db: DbSession, _: AdminUser) -> ProductRead:
    return ProductRead.model_validate(service.update_product(db=db, ref=ref, body=body))


@admin.delete(
    "/{ref}",
    responses={
        200: {"model": ProductRead, "description": "Archived: instances use the plan"},
        204: {"description": "Deleted: no instance ever used the plan"},
    },
)
def delete_product(ref: str, db: DbSession, _: AdminUser) -> Response:
    archived = service.delete_product(db=db, ref=ref)
    if archived is None:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    body = ProductRead.model_validate(archived).model_dump_json()
    return Response(content=body, media_type="application/json")
