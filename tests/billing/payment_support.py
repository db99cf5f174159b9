"""Helpers for the payment tests: a client whose app talks to the local Stripe stand-in
(``tests/fakes/stripe.py``), switching providers on, and ledger checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.fakes.stripe import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET, FakeStripe
from vmcloud.app import create_app
from vmcloud.billing import ledger
from vmcloud.billing.models import Transaction
from vmcloud.config import Settings
from vmcloud.site_settings import service as site_settings


@contextmanager
def stripe_client(
    app_settings: Settings,
    engine: Engine,
    session_factory: sessionmaker[Session],
    fake: FakeStripe,
) -> Iterator[TestClient]:
    """The test's app, configured for Stripe at the fake server."""
    settings = app_settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(STRIPE_API_KEY),
            "stripe_webhook_secret": SecretStr(STRIPE_WEBHOOK_SECRET),
            "stripe_api_base": fake.url,
        }
    )
    app = create_app(settings, engine=engine, session_factory=session_factory)
    with TestClient(app, raise_server_exceptions=False, client=("198.51.100.8", 50000)) as client:
        yield client


def set_providers(db: Session, names: list[str]) -> None:
    site_settings.update_setting(db=db, key="billing.payment_providers", value=names)
    db.commit()  # the settings cache is refreshed after a commit


def entries_of(db: Session, user_id: Any) -> int:
    return db.scalar(select(func.count()).where(Transaction.user_id == user_id)) or 0


def ledger_clean(db: Session, *user_ids: Any) -> bool:
    return [m for m in ledger.verify(db=db) if m.user_id in user_ids] == []
