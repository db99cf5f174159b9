"""NoCloud seeds for distribution cloud images: a small ISO labelled ``cidata`` holding
``meta-data`` (instance id, hostname) and ``user-data`` (SSH keys, or the customer's own)."""

from __future__ import annotations

import io
import json
import uuid

import pycdlib


def _user_data(ssh_keys: tuple[str, ...], user_data: str | None) -> str:
    if user_data:
        return user_data  # the customer's own cloud-config or script, untouched
    config: dict[str, object] = {"ssh_authorized_keys": list(ssh_keys)} if ssh_keys else {}
    # JSON is YAML: no YAML library needed to write a valid cloud-config.
    return "#cloud-config\n" + json.dumps(config) + "\n"


def seed_iso(
    *,
    instance_id: uuid.UUID,
    hostname: str,
    ssh_keys: tuple[str, ...] = (),
    user_data: str | None = None,
) -> bytes:
    meta_data: dict[str, object] = {"instance-id": str(instance_id), "local-hostname": hostname}
    if ssh_keys:
        # In meta-data too, so the keys reach the guest even when user_data is the customer's.
        meta_data["public-keys"] = list(ssh_keys)
    meta = json.dumps(meta_data) + "\n"
    files = {"meta-data": meta, "user-data": _user_data(ssh_keys, user_data)}
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        iso9660_name = name.upper().replace("-", "_") + ".;1"
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/{iso9660_name}",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
