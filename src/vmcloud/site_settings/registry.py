"""The declared site settings: each key once, with its type, default and rule.

Code reads a setting only through its declaration, ``service.get(db, GRACE_DAYS) -> int``; the
admin API validates writes to a declared key with the same declaration. A setting not declared
here (one an operator added to the table) is checked against its stored type only, and code
does not read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, EmailStr, Field, StringConstraints, TypeAdapter
from typing_extensions import TypedDict

T = TypeVar("T")


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One site setting. ``default`` is what a read gives when the row is missing (the seed
    ships every declared key), which for a feature is its off state. ``kind`` is the type of
    the value when ``type(default)`` does not say it all (lists, money, emails); the keyword
    rules narrow it: bounds for numbers, ``pattern`` and lengths for text, lengths and
    ``unique`` for lists."""

    key: str
    default: T
    kind: Any = None
    ge: int | Decimal | None = None
    gt: int | Decimal | None = None
    le: int | Decimal | None = None
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    unique: bool = False
    adapter: TypeAdapter[T] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bounds = {
            name: value
            for name in ("ge", "gt", "le", "pattern", "min_length", "max_length")
            if (value := getattr(self, name)) is not None
        }
        rules: list[Any] = [Field(**bounds)] if bounds else []
        if self.unique:
            rules.append(AfterValidator(_unique))
        kind: Any = self.kind if self.kind is not None else type(self.default)
        form: Any = Annotated[kind, *rules] if rules else kind
        object.__setattr__(self, "adapter", TypeAdapter(form))

    def validate(self, value: Any) -> T:
        """``value`` as this setting's type, or pydantic's ``ValidationError``."""
        return self.adapter.validate_python(value)


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def _unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("items must be unique")
    return values


# Money is kept with exactly two decimals, so "12" is stored and shown as "12.00".
Money = Annotated[Decimal, Field(decimal_places=2), AfterValidator(_cents)]
MAX_MONEY = Decimal("99999999.99")
Label = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
MimeType = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]
Provider = Literal["sandbox", "stripe", "manual"]
Placement = Literal["spread", "pack"]

SITE_NAME = Setting[str]("site.name", "VMCloud", kind=Label)
SUPPORT_EMAIL = Setting[str]("site.support_email", "support@example.com", kind=EmailStr)
REGISTRATION_ENABLED = Setting[bool]("auth.registration_enabled", True)

CURRENCY = Setting[str]("billing.currency", "USD", pattern=r"^[A-Z]{3}$")
GRACE_DAYS = Setting[int]("billing.grace_days", 7, ge=0, le=365)
HOURLY_MIN_BALANCE = Setting[Decimal](
    "billing.hourly_min_balance", Decimal("0.00"), kind=Money, ge=0, le=MAX_MONEY
)
PRORATED_REFUNDS = Setting[bool]("billing.prorated_refunds", True)
TOPUP_MIN = Setting[Decimal]("billing.topup_min", Decimal("5.00"), kind=Money, gt=0, le=MAX_MONEY)
TOPUP_MAX = Setting[Decimal](
    "billing.topup_max", Decimal("1000.00"), kind=Money, gt=0, le=MAX_MONEY
)
LOW_BALANCE_WARNING = Setting[Decimal](
    "billing.low_balance_warning", Decimal("0.00"), kind=Money, ge=0, le=MAX_MONEY
)
PAYMENT_PROVIDERS = Setting[list[str]](
    "billing.payment_providers", [], kind=list[Provider], unique=True
)

MAX_INSTANCES_PER_USER = Setting[int]("compute.max_instances_per_user", 10, ge=0, le=100_000)
DEFAULT_REGION = Setting[str](
    "compute.default_region", "local", pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64
)
# Sampling runs from a once-a-minute job: intervals are whole minutes or more.
METRICS_INTERVAL_SECONDS = Setting[int]("compute.metrics_interval_seconds", 60, ge=60, le=3600)
METRICS_RETENTION_DAYS = Setting[int]("compute.metrics_retention_days", 30, ge=1, le=3650)
# Where a new instance goes among the enabled nodes it fits on: "spread" (the most free memory:
# load evens out) or "pack" (the least free memory: whole nodes stay free for big plans).
PLACEMENT = Setting[Placement]("compute.placement", "spread", kind=Placement)

TICKET_CATEGORIES = Setting[list[str]](
    "support.categories", [], kind=list[Label], min_length=1, max_length=50, unique=True
)
# A missing row allows no attachments (0 bytes); an admin cannot set 0, only 0 files.
ATTACHMENT_MAX_BYTES = Setting[int]("support.attachment_max_bytes", 0, ge=1, le=100 * 1024**2)
ATTACHMENT_MAX_COUNT = Setting[int]("support.attachment_max_count", 0, ge=0, le=20)
ATTACHMENT_TYPES = Setting[list[str]](
    "support.attachment_types", [], kind=list[MimeType], max_length=100, unique=True
)
AUTO_CLOSE_DAYS = Setting[int]("support.auto_close_days", 7, ge=0, le=365)

# Backups (backup/schedule.py): the daily backup's hour (UTC) and the native retention counts.
BACKUP_HOUR = Setting[int]("backup.hour", 2, ge=0, le=23)
BACKUP_RETENTION_FULL = Setting[int]("backup.retention_full", 12, ge=1, le=9999)
BACKUP_RETENTION_DIFF = Setting[int]("backup.retention_diff", 30, ge=1, le=9999)


class CannedReply(TypedDict):
    """A reply staff can start from on a ticket's page: a title to pick it by, and its text."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    title: Label
    body: Annotated[str, StringConstraints(min_length=1, max_length=20_000, strip_whitespace=True)]


CANNED_REPLIES = Setting[list[CannedReply]](
    "support.canned_replies", [], kind=list[CannedReply], max_length=100
)


def _index(*settings: Setting[Any]) -> dict[str, Setting[Any]]:
    index: dict[str, Setting[Any]] = {}
    for setting in settings:
        if setting.key in index:
            raise ValueError(f"setting {setting.key!r} is declared twice")
        index[setting.key] = setting
    return index


REGISTRY = _index(
    SITE_NAME,
    SUPPORT_EMAIL,
    REGISTRATION_ENABLED,
    CURRENCY,
    GRACE_DAYS,
    HOURLY_MIN_BALANCE,
    PRORATED_REFUNDS,
    TOPUP_MIN,
    TOPUP_MAX,
    LOW_BALANCE_WARNING,
    PAYMENT_PROVIDERS,
    MAX_INSTANCES_PER_USER,
    DEFAULT_REGION,
    METRICS_INTERVAL_SECONDS,
    METRICS_RETENTION_DAYS,
    PLACEMENT,
    TICKET_CATEGORIES,
    ATTACHMENT_MAX_BYTES,
    ATTACHMENT_MAX_COUNT,
    ATTACHMENT_TYPES,
    AUTO_CLOSE_DAYS,
    CANNED_REPLIES,
    BACKUP_HOUR,
    BACKUP_RETENTION_FULL,
    BACKUP_RETENTION_DIFF,
)

# Pairs that must stay ordered: (lower, upper).
ORDERED: list[tuple[Setting[Decimal], Setting[Decimal]]] = [(TOPUP_MIN, TOPUP_MAX)]
