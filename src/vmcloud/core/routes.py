"""Routers included once per process and shared by every app made in it.

FastAPI builds the state of an included route (its dependencies, parameters and body fields)
lazily, on the first request that reaches it, and once per inclusion: each new app that
includes the platform's routers pays for all of them again (about a second here). The test
suite makes an app per test, so its apps share one inclusion of each router instead. What an
inclusion holds is the same for every app: the routes, their dependencies and the include
options (no prefix or tags here); the app's own state (settings, engines) is read per request
through ``request.app``. The one thing tied to the including router is FastAPI's
``dependency_overrides`` provider, which this project does not use.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute

# By the routers' identities (APIRouter is not hashable); the routers are module-level and
# live as long as the process, so an id is never reused for another.
_inclusions: dict[tuple[int, ...], tuple[BaseRoute, ...]] = {}
_lock = threading.Lock()


def _included(routers: tuple[APIRouter, ...]) -> tuple[BaseRoute, ...]:
    key = tuple(id(router) for router in routers)
    with _lock:
        found = _inclusions.get(key)
        if found is None:
            holder = APIRouter()
            for router in routers:
                holder.include_router(router)
            found = _inclusions[key] = tuple(holder.routes)
        return found


def include(app: FastAPI, *routers: APIRouter) -> None:
    """``app.include_router(r)`` for each of ``routers``, in order, sharing the inclusions."""
    app.router.routes.extend(_included(routers))
