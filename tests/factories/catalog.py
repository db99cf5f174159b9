"""Catalogue objects for tests."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.orm import Session

from vmcloud.catalog.models import Product

_counter = itertools.count(1)


def product_body(**overrides: Any) -> dict[str, Any]:
    n = next(_counter)
    body: dict[str, Any] = {
        "name": f"Plan {n}",
        "slug": f"plan-{n}",
        "description": "A test plan",
        "category": "standard",
        "specs_json": {"vcpus": 2, "memory_mb": 2048, "disk_gb": 40, "bandwidth_gb": 1000},
        "pricing_json": {"hourly": "0.017123", "monthly": "12.00", "yearly": "120.00"},
        "features_json": ["IPv4", "SSD"],
        "status": "active",
        "sort_order": 100 + n,
    }
    body.update(overrides)
    return body


def make_product(db: Session, **overrides: Any) -> Product:
    product = Product(**product_body(**overrides))
    db.add(product)
    db.flush()
    return product
