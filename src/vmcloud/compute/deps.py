"""Instances for routes, loaded for what the route does (see ``docs/security.md``):
``VisibleInstance`` to read, ``ChangeableInstance`` (row-locked) to rename, act or delete.
Each answers 404 to a caller who may not do that to the instance."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends

from vmcloud.accounts.deps import CurrentUser
from vmcloud.compute import service
from vmcloud.compute.models import Instance
from vmcloud.db.session import DbSession


def _visible(instance_id: uuid.UUID, db: DbSession, user: CurrentUser) -> Instance:
    return service.get_visible_instance(db=db, instance_id=instance_id, user=user)


def _changeable(instance_id: uuid.UUID, db: DbSession, user: CurrentUser) -> Instance:
    return service.get_changeable_instance(db=db, instance_id=instance_id, user=user)


VisibleInstance = Annotated[Instance, Depends(_visible)]
ChangeableInstance = Annotated[Instance, Depends(_changeable)]
