"""Hypervisor drivers behind one interface (``base.ComputeDriver``), chosen by name from one
registry: a node's ``driver`` column names its entry."""

from __future__ import annotations

from collections.abc import Callable

from vmcloud.compute.drivers import fake
from vmcloud.compute.drivers.base import ComputeDriver
from vmcloud.compute.drivers.libvirt import LibvirtDriver
from vmcloud.compute.models import Node
from vmcloud.compute.pools import pool_name


def _libvirt(node: Node) -> ComputeDriver:
    return LibvirtDriver(
        node.uri,
        storage_dir=node.storage_dir,
        pool_name=pool_name(node.storage_dir),
        virt_type=node.virt_type,
        network=node.network_mode,
        bridge=node.bridge,
        namespace=node.id.hex[:12],
    )


def _fake(node: Node) -> ComputeDriver:
    return fake.for_uri(node.uri)


REGISTRY: dict[str, Callable[[Node], ComputeDriver]] = {"libvirt": _libvirt, "fake": _fake}


def build(node: Node) -> ComputeDriver:
    """A new driver for ``node``, by its ``driver`` name."""
    try:
        factory = REGISTRY[node.driver]
    except KeyError:
        raise ValueError(f"node {node.name} names an unknown driver {node.driver!r}") from None
    return factory(node)
