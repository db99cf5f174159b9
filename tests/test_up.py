"""``vmcloud up`` from nothing, as ``./run`` starts it: embedded database, migrations, first
admin printed once, health and readiness answered, and a clean stop."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.accounts.test_two_factor import oathtool
from tests.compute.conftest import destroy_domains_under, drop_pool
from tests.helpers import TOKEN_IN_LINK, Mailbox
from vmcloud.accounts.passwords import verify_password
from vmcloud.compute.pools import pool_name
from vmcloud.db.embedded import EmbeddedPostgres
from vmcloud.db.replica import APPLICATION_NAME as REPLICA_APPLICATION
from vmcloud.db.replica import Replica

pytestmark = pytest.mark.slow

ADMIN_LINE = re.compile(r"login:\s+admin\s+\(admin@example\.com\)\s+password:\s+(\S+)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def data_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vmc-up-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    # `vmcloud up` made this machine a node with a storage pool in libvirt, and the journey's
    # VM runs on it: remove them too.
    destroy_domains_under(path.resolve())
    drop_pool(pool_name(str((path / "disks").resolve())))
    shutil.rmtree(path, ignore_errors=True)


def _run_up(
    data_root: Path,
    port: int,
    journey: Callable[[str, Path, str | None], None] | None = None,
    options: tuple[str, ...] = (),
) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env.pop("DATABASE_URL", None)
    env |= {"VMCLOUD_DATA_DIR": str(data_root), "VMCLOUD_PORT": str(port)}
    # Its output goes to files, never to pipes nobody reads until the end: the command and the
    # processes it starts share its stderr, and once their log lines filled a pipe's 64 KiB
    # every one of them stopped at its next line (a journey step then timed out, and all went
    # on the moment the test gave up and read the pipe).
    logs = Path(tempfile.mkdtemp(prefix="vmc-up-logs-", dir="/tmp"))
    with open(logs / "out", "w") as out_file, open(logs / "err", "w") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "vmcloud", "up", "--workers", "2", *options],
            env=env,
            stdout=out_file,
            stderr=err_file,
            text=True,
        )
    base = f"http://127.0.0.1:{port}"
    failed: Exception | None = None
    waits = ""  # what the database was doing when the journey failed
    try:
        deadline = time.monotonic() + 180
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
        assert httpx.get(f"{base}/healthz", timeout=60).json() == {"status": "ok"}
        assert httpx.get(f"{base}/openapi.json", timeout=60).status_code == 200
        login_page = httpx.get(f"{base}/", timeout=60, follow_redirects=True)
        assert login_page.status_code == 200 and 'name="password"' in login_page.text
        if journey is not None:
            # The first admin's password is printed before the server is up.
            match = ADMIN_LINE.search((logs / "out").read_text())
            try:
                journey(f"{base}/api/v1", data_root / "mail", match.group(1) if match else None)
            except Exception as exc:  # shown with what the server logged meanwhile
                failed = exc
                waits = _waits(data_root)
    finally:
        children = _children(process.pid)
        commands = [_cmdline(pid) for pid in children]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        out, err = (logs / "out").read_text(), (logs / "err").read_text()
        shutil.rmtree(logs, ignore_errors=True)
    if failed is not None:
        database_log = data_root / "postgres" / "server.log"
        raise AssertionError(
            f"{failed!r}; the server logged:\n{err[-6000:]}\n\nthe database was at:\n{waits}"
            f"\n\nand logged:\n{database_log.read_text(errors='replace')[-4000:]}"
        ) from failed
    assert process.returncode == 0, err[-2000:]
    # Two API processes and the job worker ran as children; none outlives the command.
    assert sum("spawn_main" in c for c in commands) == 2, commands
    assert sum("vmcloud worker" in c for c in commands) == 1, commands
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, [pid for pid in children if _alive(pid)]
        time.sleep(0.1)
    # The worker stopped before the embedded PostgreSQL it used.
    assert err.index('"process.stopped"') < err.index('"embedded_postgres.stopped"'), err[-3000:]
    return out, err


def _waits(data_root: Path) -> str:
    """What every backend of the embedded cluster is doing or waiting for (shown when a
    journey step fails: a stalled job or request names the lock or I/O it waits on)."""
    server = EmbeddedPostgres(data_root / "postgres")
    try:
        with psycopg.connect(server.conninfo(), connect_timeout=5, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, application_name, state, wait_event_type, wait_event,"
                " now() - xact_start, pg_blocking_pids(pid), left(query, 160)"
                " FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            ).fetchall()
    except psycopg.Error as exc:
        return repr(exc)
    return "\n".join(repr(row) for row in rows)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def _wait_for_token(mail_dir: Path, seen: int) -> str:
    """The token in the newest mail, once the in-process worker has written mail number
    ``seen + 1`` (as long as :func:`_wait_for_mail`)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = Mailbox(mail_dir).messages()
        if len(messages) > seen:
            match = TOKEN_IN_LINK.search(messages[-1].get_content())
            assert match
            return match.group(1)
        time.sleep(0.2)
    raise AssertionError("no mail arrived")


def _new_user_journey(api: str, mail_dir: Path, admin_password: str | None) -> None:
    """What a new customer does on a fresh install (step 2's definition of done)."""
    # Generous: the platform's first backup runs meanwhile, on a machine the other test worker
    # keeps busy. (Steps that once took over 10 and 30 s here were the platform stopped on its
    # full stderr pipe, see _run_up.) The waits bound a hang; they are not a speed test.
    http = httpx.Client(base_url=api, timeout=60)
    password, new_password = "first password 1", "second password 2"
    created = http.post(
        "/auth/register",
        json={"email": "newbie@example.com", "username": "newbie", "password": password},
    )
    assert created.status_code == 201, created.text
    token = _wait_for_token(mail_dir, 0)
    assert http.post("/auth/verify-email", json={"token": token}).status_code == 200

    tokens = http.post("/auth/login", json={"login": "newbie", "password": password}).json()
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    secret = http.post("/me/2fa/setup", headers=auth).json()["secret"]
    code = oathtool(secret)
    enabled = http.post("/me/2fa/enable", json={"code": code}, headers=auth)
    assert enabled.status_code == 200
    recovery = enabled.json()["recovery_codes"]

    no_code = http.post("/auth/login", json={"login": "newbie", "password": password})
    assert no_code.json()["type"] == "/problems/two-factor-required"
    next_code = oathtool(secret, at=time.time() + 30)
    with_code = http.post(
        "/auth/login", json={"login": "newbie", "password": password, "totp_code": next_code}
    )
    assert with_code.status_code == 200
    refreshed = http.post(
        "/auth/refresh", json={"refresh_token": with_code.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200

    assert (
        http.post("/auth/password-reset/request", json={"email": "newbie@example.com"}).status_code
        == 202
    )
    reset_token = _wait_for_token(mail_dir, 1)
    confirmed = http.post(
        "/auth/password-reset/confirm", json={"token": reset_token, "new_password": new_password}
    )
    assert confirmed.status_code == 204
    # The refreshed login died with the reset; the new password needs the second factor too.
    stale = http.post("/auth/refresh", json={"refresh_token": refreshed.json()["refresh_token"]})
    assert stale.status_code == 401
    final = http.post(
        "/auth/login",
        json={"login": "newbie", "password": new_password, "totp_code": recovery[0]},
    ).json()
    me = http.get("/me", headers={"Authorization": f"Bearer {final['access_token']}"}).json()
    assert (me["email_verified"], me["two_factor_enabled"]) == (True, True)
    _instance_journey(http, {"Authorization": f"Bearer {final['access_token']}"})
    assert admin_password is not None
    _support_journey(
        http, {"Authorization": f"Bearer {final['access_token']}"}, admin_password, mail_dir
    )
    out = http.post(
        "/auth/logout",
        json={"refresh_token": final["refresh_token"]},
        headers={"Authorization": f"Bearer {final['access_token']}"},
    )
    assert out.status_code == 204
    assert (
        http.post("/auth/refresh", json={"refresh_token": final["refresh_token"]}).status_code
        == 401
    )


def _wait_status(http: httpx.Client, url: str, headers: dict[str, str], want: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 90
    body: dict = {}  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        body = http.get(url, headers=headers).json()
        if body.get("status") == want:
            return body
        time.sleep(0.5)
    raise AssertionError(f"never {want}: {body}")


def _top_up_through_the_sandbox(http: httpx.Client, auth: dict[str, str], amount: str) -> None:
    """The sandbox provider's own checkout page, as a browser would use it."""
    created = http.post(
        "/billing/top-ups", json={"amount": amount, "provider": "sandbox"}, headers=auth
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    checkout = created.json()["checkout_url"]
    page = httpx.get(checkout, timeout=30)
    assert page.status_code == 200 and amount in page.text
    paid = httpx.post(checkout, data={"outcome": "pay"}, timeout=30)
    assert paid.status_code == 200, paid.text


def _instance_journey(http: httpx.Client, auth: dict[str, str]) -> None:
    """Steps 4 and 5's definition of done: top up through the sandbox page, buy an hourly and
    a monthly instance (real VMs on the machine's own libvirt, driven by the worker inside
    `vmcloud up`), see the charges, cancel one subscription, delete an instance."""
    refused = http.post(
        "/instances",
        json={
            "name": "too-early",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": "monthly",
        },
        headers=auth,
    )
    assert refused.status_code == 402  # nothing on the balance yet
    _top_up_through_the_sandbox(http, auth, "20.00")
    assert http.get("/billing/balance", headers=auth).json()["balance"] == "20.00"

    ids = {}
    for cycle in ("hourly", "monthly"):
        order = {
            "name": f"{cycle}-vm",
            "product": "nano",
            "region": "local",
            "image": "tiny-linux",
            "billing_cycle": cycle,
        }
        created = http.post("/instances", json=order, headers=auth)
        assert created.status_code == 202, created.text
        ids[cycle] = created.json()["id"]
    ledger = http.get("/billing/transactions", headers=auth).json()["items"]
    assert [(t["type"], t["amount"], t["status"]) for t in ledger] == [
        ("charge", "4.00", "completed"),
        ("payment", "20.00", "completed"),
    ]
    subs = {s["type"]: s for s in http.get("/subscriptions", headers=auth).json()["items"]}
    cancelled = http.post(f"/subscriptions/{subs['monthly']['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["auto_renew"] is False

    url = f"/instances/{ids['hourly']}"
    running = _wait_status(http, url, auth, "running")
    assert running["ip_address"]
    assert running["resources_json"]["memory_used_mb"] >= 0
    for action, final in (("stop", "stopped"), ("start", "running"), ("reboot", "running")):
        response = http.post(f"{url}/actions", json={"type": action}, headers=auth)
        assert response.status_code == 202, response.text
        _wait_status(http, url, auth, final)
    assert http.delete(url, headers=auth).status_code == 202
    # The started hour of the hourly instance is charged on deletion (0.006, rounded once).
    ledger = http.get("/billing/transactions", headers=auth).json()["items"]
    assert (ledger[0]["type"], ledger[0]["amount"]) == ("charge", "0.01")
    assert http.get("/billing/balance", headers=auth).json()["balance"] == "15.99"
    deadline = time.monotonic() + 60
    while http.get(url, headers=auth).status_code != 404:
        assert time.monotonic() < deadline, "never deleted"
        time.sleep(0.5)
    _wait_status(http, f"/instances/{ids['monthly']}", auth, "running")


def _wait_for_mail(mail_dir: Path, to: str, subject: str) -> str:
    # As long as the journey's requests may take (see _new_user_journey).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for message in Mailbox(mail_dir).to(to):
            if message["Subject"].startswith(subject):
                return str(message.get_content())
        time.sleep(0.2)
    raise AssertionError(f"no mail {subject!r} to {to}")


def _support_journey(
    http: httpx.Client, customer: dict[str, str], admin_password: str, mail_dir: Path
) -> None:
    """Step 6's definition of done: a customer and a staff member hold a conversation, with
    the emails in the local mailbox."""
    login = http.post("/auth/login", json={"login": "admin", "password": admin_password})
    staff = {"Authorization": f"Bearer {login.json()['access_token']}"}
    me = http.get("/me", headers=staff).json()
    vm = http.get("/instances", headers=customer).json()["items"][0]["id"]
    opened = http.post(
        "/tickets",
        json={
            "subject": "Disk is slow",
            "description": "Writes crawl since this morning.",
            "category": "technical",
            "instance_id": vm,
        },
        headers=customer,
    )
    assert opened.status_code == 201, opened.text
    tid = opened.json()["id"]
    assert "Writes crawl" in _wait_for_mail(mail_dir, "admin@example.com", "[VMCloud] New ticket")
    queue = http.get("/admin/tickets?unassigned=true", headers=staff).json()["items"]
    assert [t["id"] for t in queue] == [tid]
    http.patch(f"/admin/tickets/{tid}", json={"assigned_to": me["id"]}, headers=staff)
    note = "Internal: the node's disk is degraded."
    http.post(
        f"/tickets/{tid}/messages", json={"message": note, "is_internal": True}, headers=staff
    )
    reply = http.post(
        f"/tickets/{tid}/messages",
        json={"message": "We moved you to a faster disk."},
        headers=staff,
    )
    assert reply.status_code == 201
    assert "faster disk" in _wait_for_mail(mail_dir, "newbie@example.com", "[VMCloud] Re:")
    seen = http.get(f"/tickets/{tid}", headers=customer).json()
    assert [m["message"] for m in seen["messages"]] == ["We moved you to a faster disk."]
    files = {"files": ("fio.txt", b"write: 850 MB/s\n", "text/plain")}
    answer = http.post(
        f"/tickets/{tid}/messages", data={"message": "Much better, thanks."}, files=files,
        headers=customer,
    )  # fmt: skip
    assert answer.status_code == 201, answer.text
    attachment = answer.json()["attachments"][0]["id"]
    got = http.get(f"/tickets/{tid}/attachments/{attachment}", headers=staff)
    assert got.content == b"write: 850 MB/s\n"
    resolved = http.patch(f"/admin/tickets/{tid}", json={"status": "resolved"}, headers=staff)
    assert resolved.json()["status"] == "resolved"
    _wait_for_mail(mail_dir, "newbie@example.com", "[VMCloud] Resolved")
    rated = http.post(f"/tickets/{tid}/rating", json={"rating": 5}, headers=customer)
    assert rated.json()["satisfaction_rating"] == 5
    for message in Mailbox(mail_dir).to("newbie@example.com"):
        assert note not in message.get_content()


def _billing_verify(data_root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMCLOUD_")}
    env.pop("DATABASE_URL", None)
    env["VMCLOUD_DATA_DIR"] = str(data_root)
    done = subprocess.run(
        [sys.executable, "-m", "vmcloud", "billing", "verify"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _reads_from_the_replica(
    data_root: Path, admin_password: str
) -> Callable[[str, Path, str | None], None]:
    """``up --replica``: the standby streams from the primary, and the API's list endpoints
    read from it (the read engine's pooled connection is on the standby afterwards)."""

    def journey(base: str, _mail: Path, _password: str | None) -> None:
        primary = EmbeddedPostgres(data_root / "postgres")
        standby = Replica(primary)
        with psycopg.connect(primary.conninfo("vmcloud")) as conn:
            streaming = conn.execute(
                "SELECT state FROM pg_stat_replication WHERE application_name = %s",
                (REPLICA_APPLICATION,),
            ).fetchall()
        assert streaming == [("streaming",)]
        with httpx.Client(base_url=base, timeout=60) as http:
            tokens = http.post("/auth/login", json={"login": "admin", "password": admin_password})
            assert tokens.status_code == 200, tokens.text
            auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
            for _ in range(4):  # two API processes: both serve some
                assert http.get("/instances", headers=auth).status_code == 200
        with psycopg.connect(standby.conninfo("vmcloud")) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            readers = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = 'vmcloud' AND pid <> pg_backend_pid()"
            ).fetchone()
        assert readers is not None
        assert readers[0], "no API connection on the standby: reads did not go to the replica"

    return journey


def test_up_from_nothing_then_again(data_root: Path) -> None:
    out, err = _run_up(data_root, _free_port(), journey=_new_user_journey)
    match = ADMIN_LINE.search(out)
    assert match, out
    password = match.group(1)
    assert "listening on http://127.0.0.1:" in err
    assert re.search(r"Web panel: http://127\.0\.0\.1:\d+/", out), out
    assert not (data_root / "postgres" / "data" / "postmaster.pid").exists()  # stopped cleanly
    assert "every balance equals its ledger" in _billing_verify(data_root)

    # Second start, with the read replica: same data, no new admin, no password shown again.
    out_again, _ = _run_up(
        data_root, _free_port(), journey=_reads_from_the_replica(data_root, password),
        options=("--replica",),
    )  # fmt: skip
    assert "password" not in out_again
    assert f"Read replica: {data_root / 'replica'}" in out_again
    assert not (data_root / "replica" / "data" / "postmaster.pid").exists()  # stopped with up
    assert "Admin login: admin (admin@example.com)" in out_again
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
