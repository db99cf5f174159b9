"""Subscriptions for routes, loaded for what the route does (see ``docs/security.md``):
``VisibleSubscription`` to read, ``ChangeableSubscription`` (row-locked) to cancel. Each
answers 404 to a caller who may not do that to the subscription."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from vmcloud.accounts.deps import CurrentUser
from vmcloud.billing import subscriptions
from vmcloud.billing.models import Subscription
from vmcloud.db.session import DbSession


def _visible(subscription_id: uuid.UUID, db: DbSession, user: CurrentUser) -> Subscription:
    return subscriptions.get_visible(db=db, subscription_id=subscription_id, user=user)


def _changeable(subscription_id: uuid.UUID, db: DbSession, user: CurrentUser) -> Subscription:
    return subscriptions.get_changeable(db=db, subscription_id=subscription_id, user=user)


VisibleSubscription = Annotated[Subscription, Depends(_visible)]
ChangeableSubscription = Annotated[Subscription, Depends(_changeable)]
