"""Bodies of the instance and node endpoints."""

from __future__ import annotations

import ipaddress
import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, model_validator

from vmcloud.accounts import ssh_keys
from vmcloud.compute.models import Instance
from vmcloud.core.schemas import InputModel, OutputModel, UTCDateTime

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _check_hostname(value: str) -> str:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, each at most 63
    characters, 253 in all."""
    if not 1 <= len(value) <= 253 or not all(_LABEL.match(p) for p in value.split(".")):
        raise ValueError("an RFC 1123 host name: letters, digits, inner '-', dot-separated labels")
    return value.lower()


Hostname = Annotated[str, AfterValidator(_check_hostname)]


def _check_ssh_key(value: str) -> str:
    """One OpenSSH public key line, checked as a saved key is (``accounts/ssh_keys.py``) and
    normalised the same way."""
    return ssh_keys.parse_public_key(value)[0]  # InvalidKeyError is a ValueError: a 422


SshKey = Annotated[str, AfterValidator(_check_ssh_key)]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


class InstanceCreate(InputModel):
    name: Name
    product: Ref
    region: Ref
    image: Ref
    billing_cycle: Literal["hourly", "monthly", "yearly"]
    hostname: Hostname | None = None
    ssh_keys: Annotated[
        list[SshKey],
        Field(max_length=20),
    ] = Field(default_factory=list)
    # Saved keys of the caller (GET /me/ssh-keys), added to ``ssh_keys``; an id that is not one
    # of the caller's keys is a 422.
    ssh_key_ids: Annotated[list[uuid.UUID], Field(max_length=50)] = Field(default_factory=list)
    user_data: Annotated[str, Field(max_length=65_536)] | None = None


class InstanceUpdate(InputModel):
    name: Name


class InstanceAction(InputModel):
    type: Literal["start", "stop", "reboot"]


class InstanceRead(OutputModel):
    """An instance as its owner sees it, and as anyone sees it through ``/instances``: no node,
    no reservation. ``metadata_json`` describes the order (region, image, billing cycle, the
    guest's network and SSH keys); ``user_data`` may hold secrets and is never shown."""

    id: uuid.UUID
    user_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    hostname: str | None
    ip_address: str | None
    status: str | None
    region: str | None
    image: str | None
    billing_cycle: str | None
    error_reason: str | None
    transition_at: UTCDateTime | None
    metadata_json: dict[str, Any] | None
    resources_json: dict[str, Any] | None
    created_at: UTCDateTime | None
    started_at: UTCDateTime | None
    stopped_at: UTCDateTime | None
    expires_at: UTCDateTime | None
    deleted_at: UTCDateTime | None

    @model_validator(mode="before")
    @classmethod
    def _from_instance(cls, value: Any) -> Any:
        return _view(value, fields=cls.model_fields) if isinstance(value, Instance) else value


class InstanceAdminRead(InstanceRead):
    """What staff see through ``/admin/instances``: also the node and what the instance holds
    on it."""

    node_id: uuid.UUID | None
    node: str | None
    reserved_vcpus: int | None
    reserved_memory_mb: int | None
    reserved_disk_gb: int | None


# Keys of the stored metadata_json never shown; the node's only to staff.
NEVER_SHOWN = frozenset({"user_data"})
STAFF_ONLY = frozenset({"node", "reserved"})


def _view(instance: Instance, *, fields: dict[str, Any]) -> dict[str, Any]:
    """The response's fields from the row: the slugs of its region and image, its node's name
    (when ``fields`` has ``node``), and metadata_json describing the order as it always has."""
    staff = "node" in fields
    named = {
        "region": instance.region.slug if instance.region else None,
        "image": instance.image.slug if instance.image else None,
        "node": instance.node.name if staff and instance.node else None,
    }
    hidden = NEVER_SHOWN if staff else NEVER_SHOWN | STAFF_ONLY
    stored = instance.metadata_json
    metadata = {k: v for k, v in (stored or {}).items() if k not in hidden}
    described = {**named, "billing_cycle": instance.billing_cycle}
    metadata |= {k: v for k, v in described.items() if v is not None}
    values = {name: getattr(instance, name) for name in fields if name not in named}
    return values | named | {"metadata_json": metadata if stored is not None or metadata else None}


class MetricRead(OutputModel):
    collected_at: UTCDateTime
    cpu_percent: float
    memory_used_mb: int
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int


class MetricPoint(OutputModel):
    """One bucket of a series: averages of the samples in it (rates in bytes per second;
    null when no sample in it had a previous one to measure against, e.g. after a restart)."""

    at: UTCDateTime
    samples: int
    cpu_percent: float
    cpu_percent_max: float
    memory_used_mb: float
    disk_read_bps: float | None
    disk_write_bps: float | None
    net_rx_bps: float | None
    net_tx_bps: float | None


class MetricSeries(OutputModel):
    """Usage over a range ending now, in buckets of ``step_seconds``. ``clipped``: the range
    reaches past the samples' retention (``retention_days``), so it starts at ``since``."""

    range: str
    since: UTCDateTime
    until: UTCDateTime
    step_seconds: int
    retention_days: int
    clipped: bool
    points: list[MetricPoint]


class NodeCreate(InputModel):
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100)]
    region: Ref
    uri: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    driver: Literal["libvirt", "fake"] = "libvirt"
    storage_dir: Annotated[str, StringConstraints(pattern=r"^/[^\x00]*$", max_length=500)]
    network_mode: Literal["user", "bridge"] = "user"
    bridge: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] | None = None
    virt_type: Literal["qemu", "kvm"] = "qemu"
    vcpus: Annotated[int, Field(gt=0, le=4096)]
    memory_mb: Annotated[int, Field(gt=0, le=64 * 1024 * 1024)]
    disk_gb: Annotated[int, Field(gt=0, le=1024 * 1024)]
    cpu_overcommit: Annotated[Decimal, Field(ge=1, le=64, decimal_places=2)] = Decimal("4.0")
    ram_overcommit: Annotated[Decimal, Field(ge=1, le=4, decimal_places=2)] = Decimal("1.0")
    disk_overcommit: Annotated[Decimal, Field(ge=1, le=10, decimal_places=2)] = Decimal("1.0")
    status: Literal["enabled", "disabled", "maintenance"] = "enabled"


AbsolutePath = Annotated[str, StringConstraints(pattern=r"^/.{0,499}$")]


class ImageFiles(InputModel):
    """Where one node keeps one image's files."""

    path: AbsolutePath | None = None
    kernel: AbsolutePath | None = None
    initrd: AbsolutePath | None = None


class NodeUpdate(InputModel):
    image_boot_json: dict[Annotated[str, StringConstraints(max_length=64)], ImageFiles] | None = (
        None
    )
    status: Literal["enabled", "disabled", "maintenance"] | None = None
    vcpus: Annotated[int, Field(gt=0, le=4096)] | None = None
    memory_mb: Annotated[int, Field(gt=0, le=64 * 1024 * 1024)] | None = None
    disk_gb: Annotated[int, Field(gt=0, le=1024 * 1024)] | None = None
    cpu_overcommit: Annotated[Decimal, Field(ge=1, le=64, decimal_places=2)] | None = None
    ram_overcommit: Annotated[Decimal, Field(ge=1, le=4, decimal_places=2)] | None = None
    disk_overcommit: Annotated[Decimal, Field(ge=1, le=10, decimal_places=2)] | None = None


class NodeRead(OutputModel):
    id: uuid.UUID
    name: str
    region_id: uuid.UUID
    driver: str
    uri: str
    storage_dir: str
    network_mode: str
    bridge: str | None
    virt_type: str
    vcpus: int
    memory_mb: int
    disk_gb: int
    cpu_overcommit: Decimal
    ram_overcommit: Decimal
    disk_overcommit: Decimal
    allocated_vcpus: int
    allocated_memory_mb: int
    allocated_disk_gb: int
    status: str
    image_boot_json: dict[str, Any]
    last_seen_at: UTCDateTime | None
    health: str
    health_error: str | None
    health_changed_at: UTCDateTime | None
    created_at: UTCDateTime | None


# -- IP pools ------------------------------------------------------------------------------


def _check_network(value: str) -> str:
    """A network in CIDR notation with no host bits set (``10.0.0.0/24``, not
    ``10.0.0.5/24``), written canonically."""
    try:
        if "%" in value:  # a scoped IPv6 address (zone id): PostgreSQL's inet refuses it
            raise ValueError(value)
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError:
        raise ValueError("a network in CIDR notation, e.g. 203.0.113.0/24") from None


def _check_address(value: str) -> str:
    """One IPv4 or IPv6 address, written canonically."""
    try:
        if "%" in value:  # a scoped IPv6 address (zone id): PostgreSQL's inet refuses it
            raise ValueError(value)
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError("an IPv4 or IPv6 address") from None


Network = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_network)]
Address = Annotated[str, StringConstraints(max_length=64), AfterValidator(_check_address)]
PoolName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$", max_length=100)
]
PoolStatus = Literal["active", "disabled"]


class IpPoolCreate(InputModel):
    name: PoolName
    region: Ref
    cidr: Network
    gateway: Address | None = None
    reserved: Annotated[list[Address], Field(max_length=1024)] = Field(default_factory=list)
    status: PoolStatus = "active"


class IpPoolUpdate(InputModel):
    """``gateway`` may be set to null (a pool without one); ``status`` may not."""

    status: PoolStatus | None = None
    gateway: Address | None = None


class IpPoolAddress(InputModel):
    address: Address


class IpPoolRead(OutputModel):
    """A pool and its addresses: ``hosts`` (every host address of ``cidr``), ``used`` (held by
    live instances), ``free`` (what is left to lease: hosts less used, reserved and gateway)."""

    id: uuid.UUID
    name: str
    region_id: uuid.UUID
    region: str
    cidr: Annotated[str, BeforeValidator(str)]
    gateway: str | None
    reserved: list[str]
    status: str
    hosts: int
    used: int
    free: int
    created_at: UTCDateTime | None
    updated_at: UTCDateTime | None


class IpLeaseRead(OutputModel):
    """An address of the pool held by a live instance."""

    address: str
    instance_id: uuid.UUID
    instance_name: str
    status: str | None
    user_id: uuid.UUID
    user_email: str


class IpPoolDetail(IpPoolRead):
    """A pool with a page of its leases, by address (``?limit=`` and ``?cursor=`` page them;
    ``leases_next_cursor`` is the next page's cursor)."""

    leases: list[IpLeaseRead]
    leases_next_cursor: str | None
