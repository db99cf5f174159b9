"""Imports every domain's models so that ``Base.metadata`` knows all tables (Alembic, tests)."""

from vmcloud.accounts.models import (
    ApiToken,
    EmailVerification,
    PasswordReset,
    RecoveryCode,
    RefreshToken,
    SshKey,
    User,
)
from vmcloud.audit.models import AuditLog
from vmcloud.backup.models import BackupDrill, BackupRun
from vmcloud.billing.models import (
    LedgerCheckpoint,
    LedgerCheckpointSum,
    Subscription,
    Transaction,
)
from vmcloud.catalog.models import Image, Product, Region
from vmcloud.compute.models import Instance, InstanceMetric, IpPool, Node
from vmcloud.core.idempotency import IdempotencyKey
from vmcloud.core.ratelimit import RateLimitCounter
from vmcloud.db.base import Base
from vmcloud.site_settings.models import Setting
from vmcloud.support.models import SupportTicket, TicketMessage

__all__ = [
    "ApiToken",
    "AuditLog",
    "BackupDrill",
    "BackupRun",
    "Base",
    "EmailVerification",
    "IdempotencyKey",
    "Image",
    "Instance",
    "InstanceMetric",
    "IpPool",
    "LedgerCheckpoint",
    "LedgerCheckpointSum",
    "Node",
    "PasswordReset",
    "Product",
    "RateLimitCounter",
    "RecoveryCode",
    "RefreshToken",
    "Region",
    "Setting",
    "SshKey",
    "Subscription",
    "SupportTicket",
    "TicketMessage",
    "Transaction",
    "User",
]
