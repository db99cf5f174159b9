"""``vmcloud up`` from nothing, as ``./run`` starts it: embedded database, migrations, first
admin printed once, health and readiness answered, and a clean stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from vmcloud.accounts.passwords import verify_password
from vmcloud.db.embedded import EmbeddedPostgres


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def data_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-up-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run_up(data_root: Path, port: int) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env.pop("DATABASE_URL", None)
    env |= {"VMCLOUD_DATA_DIR": str(data_root), "VMCLOUD_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "vmcloud", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, "never became ready"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base}/openapi.json").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err[-2000:]
    return out, err


def test_up_from_nothing_then_again(data_root: Path) -> None:
    out, err = _run_up(data_root, _free_port())
    match = re.search(r"login:\s+admin\s+\(admin@example\.com\)\s+password:\s+(\S+)", out)
    assert match, out
    password = match.group(1)
    assert "listening on http://127.0.0.1:" in err
    assert not (data_root / "postgres" / "data" / "postmaster.pid").exists()  # stopped cleanly

    # Second start: same data, no new admin, no password shown again.
    out_again, _ = _run_up(data_root, _free_port())
    assert "password" not in out_again
    assert password not in out_again

    with (
        EmbeddedPostgres(data_root / "postgres") as server,
        psycopg.connect(server.conninfo("vmcloud")) as conn,
    ):
        rows = conn.execute(
            "SELECT username, password_hash FROM users WHERE role = 'admin'"
        ).fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "admin"
    assert verify_password(rows[0][1], password)
