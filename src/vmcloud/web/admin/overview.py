"""``/admin``: the staff overview. Counters of every domain, each read by one grouped
statement of its own service, and (admins only: the audit log is theirs) the newest audit
rows; live on every change a counter depends on."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.routing import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from vmcloud.accounts.deps import is_admin
from vmcloud.accounts.models import STAFF_ROLES
from vmcloud.audit import service as audit
from vmcloud.backup import service as backups
from vmcloud.billing import subscriptions
from vmcloud.billing.payments import service as payments
from vmcloud.compute import nodes
from vmcloud.compute import service as compute
from vmcloud.compute.models import INSTANCE_STATUSES
from vmcloud.config import Settings
from vmcloud.core import jobs
from vmcloud.core.deps import AppSettings
from vmcloud.db.session import ReadDbSession
from vmcloud.site_settings import service as site_settings
from vmcloud.site_settings.registry import CURRENCY
from vmcloud.support import service as support
from vmcloud.web.admin.access import StaffPanelUser, page, stream
from vmcloud.web.render import fragment
from vmcloud.web.session import cookie_secret, login_of

router = APIRouter(include_in_schema=False)

# What the counters depend on (``metric`` samples change none of them).
LIVE_KINDS = frozenset(
    {"instance", "node", "ticket", "top_up", "balance", "subscription", "audit", "job", "backup"}
)
RECENT_AUDIT = 10


def counters(db: Session, *, can_admin: bool, settings: Settings) -> dict[str, Any]:
    """Everything the overview shows (backups: to admins, who run the installation)."""
    by_status = compute.status_counts(db=db)
    open_tickets, unassigned = support.queue_counts(db=db)
    return {
        "instances": [(s, by_status[s]) for s in INSTANCE_STATUSES if by_status.get(s)],
        "instance_total": sum(by_status.values()),
        "fleet": nodes.health_summary(db=db),
        "open_tickets": open_tickets,
        "unassigned": unassigned,
        "top_ups": payments.top_ups_today(db=db),
        "currency": site_settings.get(db, CURRENCY),
        "failed_jobs": jobs.failed_count(db=db),
        "past_due": subscriptions.past_due_count(db=db),
        "audit": audit.recent(db, limit=RECENT_AUDIT) if can_admin else None,
        "backup_problems": (
            backups.recorded_problems(
                db=db, managed=backups.embedded_repository(settings) is not None
            )
            if can_admin
            else None
        ),
        "can_admin": can_admin,
    }


@router.get("/admin")
def overview_page(
    request: Request, db: ReadDbSession, user: StaffPanelUser, settings: AppSettings
) -> Response:
    # A report: read from the replica when one is configured (milliseconds behind).
    context = counters(db, can_admin=is_admin(user), settings=settings)
    return page(request, "admin/overview.html", user, context, area="overview")


def live_counters(db: Session, raw: str | None, settings: Settings) -> str | None:
    # The viewer's role is read again with each render: an admin demoted to support stops
    # seeing the audit rows at once, and someone no longer staff sees nothing more.
    login = login_of(db, raw)
    if login is None or login.user.role not in STAFF_ROLES:
        return None
    context = counters(db, can_admin=is_admin(login.user), settings=settings)
    return fragment("admin/_overview_counters.html", oob=True, **context)


@router.get("/admin/stream")
async def overview_stream(request: Request, _: StaffPanelUser, settings: AppSettings) -> Response:
    raw = cookie_secret(request)
    return await stream(
        request,
        resync=lambda db: live_counters(db, raw, settings),
        redraw_on=lambda event: event.get("kind") in LIVE_KINDS,
    )
