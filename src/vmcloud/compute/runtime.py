"""What a job needs to act on an instance: its node's driver and the VM's specification."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from vmcloud.catalog import service as catalog
from vmcloud.compute import nodes
from vmcloud.compute.drivers.base import (
    BootSource,
    ComputeDriver,
    DriverError,
    NetworkConfig,
    VMSpec,
)
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.service import reserved_need


@dataclass(frozen=True)
class Target:
    node: Node
    driver: ComputeDriver
    spec: VMSpec


def target_of(db: Session, instance: Instance) -> Target:
    node = db.get(Node, instance.node_id) if instance.node_id else None
    if node is None:
        raise DriverError("the instance has no node")
    product = catalog.get_product_by_id(db=db, product_id=instance.product_id)
    meta = instance.metadata_json or {}
    image = catalog.get_image(db=db, image_id=instance.image_id) if instance.image_id else None
    boot_json = {
        **(image.boot_json if image else {}),
        **((node.image_boot_json or {}).get(image.slug if image else "") or {}),  # node's copy
    }
    # The VM gets what was reserved for it on the node (older rows: the plan).
    size = reserved_need(instance, product.specs_json if product else None)
    spec = VMSpec(
        instance_id=instance.id,
        hostname=instance.hostname or "vm",
        vcpus=size.vcpus if size else 1,
        memory_mb=size.memory_mb if size else 512,
        disk_gb=size.disk_gb if size else 1,
        boot=BootSource(
            kind=str(boot_json.get("kind", "kernel")),
            kernel=boot_json.get("kernel"),
            initrd=boot_json.get("initrd"),
            cmdline=str(boot_json.get("cmdline", "")),
            disk_path=boot_json.get("path"),
            disk_format=str(boot_json.get("format", "qcow2")),
            cloud_init=bool(boot_json.get("cloud_init", False)),
        ),
        network=NetworkConfig(
            address=instance.ip_address, prefix=meta.get("prefix"), gateway=meta.get("gateway")
        ),
        ssh_keys=tuple(meta.get("ssh_keys") or ()),
        user_data=meta.get("user_data"),
    )
    return Target(node=node, driver=nodes.driver_for(node), spec=spec)
