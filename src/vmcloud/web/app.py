"""The web panel, served by the API's own app on the same origin: its routes, templates and
static files, its session and CSRF layers and its live-update hub (see docs/panel.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from vmcloud.config import Settings
from vmcloud.core import routes
from vmcloud.core.jobs import libpq_url
from vmcloud.support import attachments
from vmcloud.web import errors
from vmcloud.web.admin import audit as admin_audit
from vmcloud.web.admin import instances as admin_instances
from vmcloud.web.admin import ip_pools as admin_ip_pools
from vmcloud.web.admin import nodes as admin_nodes
from vmcloud.web.admin import overview as admin_overview
from vmcloud.web.admin import products as admin_products
from vmcloud.web.admin import settings as admin_settings
from vmcloud.web.admin import subscriptions as admin_subscriptions
from vmcloud.web.admin import tickets as admin_tickets
from vmcloud.web.admin import tickets_actions as admin_tickets_actions
from vmcloud.web.admin import transactions as admin_transactions
from vmcloud.web.admin import users as admin_users
from vmcloud.web.admin import users_actions as admin_users_actions
from vmcloud.web.customer import (
    account,
    account_keys,
    auth,
    billing,
    console,
    graphs,
    instances,
    instances_order,
    signup,
    support,
    support_actions,
)
from vmcloud.web.events import Hub
from vmcloud.web.render import Flash
from vmcloud.web.security import PanelCsrf, PanelHeaders, signing_secret

STATIC = Path(__file__).parent / "static"
ROUTERS = (
    auth.router,
    signup.router,
    account.router,
    account_keys.router,
    billing.router,
    instances_order.router,
    instances.router,
    graphs.router,
    support_actions.router,  # before support's: /support/new is not a ticket id
    support.router,
    console.router,
)
# The staff panel (``/admin…``).
ADMIN_ROUTERS = (
    admin_overview.router,
    admin_tickets.router,
    admin_tickets_actions.router,
    admin_ip_pools.router,
    admin_settings.router,
    admin_products.router,
    admin_transactions.router,
    admin_audit.router,
    admin_users.router,
    admin_users_actions.router,
    admin_subscriptions.router,
    admin_instances.router,
    admin_nodes.router,  # its /admin/nodes/new before /admin/nodes/{node_id}
)


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the panel on ``app``. Call before the app's outer middleware is added: the
    panel's layers sit inside the request-size limit, which bounds the bodies they read."""
    app.state.panel_flash = Flash(signing_secret(settings.jwt_key) + ":flash")
    assert settings.database_url
    app.state.panel_events = Hub(libpq_url(settings.database_url))
    routes.include(app, *ROUTERS, *ADMIN_ROUTERS)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    errors.install(app)
    app.add_middleware(PanelCsrf, jwt_key=settings.jwt_key, upload_paths=attachments.MESSAGE_PATH)
    app.add_middleware(PanelHeaders, https=settings.public_url.startswith("https://"))


async def _favicon() -> FileResponse:
    # Pages name their icon; this answers browsers that ask at the conventional address.
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


async def shutdown(app: FastAPI) -> None:
    hub: Hub = app.state.panel_events
    await hub.stop()
