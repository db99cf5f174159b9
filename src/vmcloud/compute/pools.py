"""Names of the libvirt storage pools that hold a node's disks."""

from __future__ import annotations

import hashlib


def pool_name(storage_dir: str) -> str:
    """The libvirt storage pool of a disk directory: named after the directory, so two
    installations (or a reinstall in a new place) never reuse each other's pool."""
    digest = hashlib.sha256(storage_dir.rstrip("/").encode()).hexdigest()[:12]
    return f"vmcloud-{digest}"
