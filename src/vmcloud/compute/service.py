"""Compute operations (instances, nodes, scheduling arrive with step 4)."""

from __future__ import annotations

import uuid

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from vmcloud.compute.models import Instance


def product_in_use(*, db: Session, product_id: uuid.UUID) -> bool:
    """Whether any instance, live or deleted, was created from the product."""
    return bool(db.scalar(select(exists().where(Instance.product_id == product_id))))
