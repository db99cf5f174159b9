"""Public regions and images: only the active ones."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from vmcloud.catalog.models import Image, Region


def test_regions_lists_active_ones(client: TestClient, db: Session) -> None:
    db.add(Region(slug="closed-dc", name="Closed", status="disabled"))
    db.flush()
    body = client.get("/api/v1/regions").json()
    slugs = [r["slug"] for r in body["items"]]
    assert "local" in slugs and "closed-dc" not in slugs
    assert body["next_cursor"] is None


def test_images_lists_active_ones_without_boot_internals(client: TestClient, db: Session) -> None:
    db.add(Image(slug="old-os", name="Old", distro="x", version="1", status="deprecated"))
    db.flush()
    items = client.get("/api/v1/images").json()["items"]
    slugs = [i["slug"] for i in items]
    assert "tiny-linux" in slugs
    assert "debian-12" not in slugs  # disabled until an operator registers its disk
    assert "old-os" not in slugs
    assert all("boot_json" not in i for i in items)  # node paths stay private
