"""Bodies of the instance and node endpoints."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, field_validator

from vmcloud.core.schemas import InputModel, OutputModel, UTCDateTime

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _check_hostname(value: str) -> str:
    """RFC 1123: dot-separated labels of letters, digits and inner hyphens, each at most 63
    characters, 253 in all."""
    if not 1 <= len(value) <= 253 or not all(_LABEL.match(p) for p in value.split(".")):
        raise ValueError("an RFC 1123 host name: letters, digits, inner '-', dot-separated labels")
    return value.lower()


Hostname = Annotated[str, AfterValidator(_check_hostname)]
SSH_KEY = r"^(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( [^\r\n]{0,200})?$"  # noqa: E501

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
        list[Annotated[str, StringConstraints(strip_whitespace=True, pattern=SSH_KEY)]],
        Field(max_length=20),
    ] = Field(default_factory=list)
    user_data: Annotated[str, Field(max_length=65_536)] | None = None


class InstanceUpdate(InputModel):
    name: Name


class InstanceAction(InputModel):
    type: Literal["start", "stop", "reboot"]


class InstanceRead(OutputModel):
    id: uuid.UUID
    user_id: uuid.UUID
    product_id: uuid.UUID
    name: str
    hostname: str | None
    ip_address: str | None
    status: str | None
    metadata_json: dict[str, Any] | None
    resources_json: dict[str, Any] | None
    created_at: UTCDateTime | None
    started_at: UTCDateTime | None
    stopped_at: UTCDateTime | None
    expires_at: UTCDateTime | None
    deleted_at: UTCDateTime | None

    @field_validator("metadata_json", mode="after")
    @classmethod
    def _public_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # user_data may hold secrets; it is the guest's, not the API's, to show.
        if value is None:
            return None
        return {k: v for k, v in value.items() if k != "user_data"}


class MetricRead(OutputModel):
    collected_at: UTCDateTime
    cpu_percent: float
    memory_used_mb: int
    disk_read_bytes: int
    disk_write_bytes: int
    net_rx_bytes: int
    net_tx_bytes: int


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
    created_at: UTCDateTime | None
