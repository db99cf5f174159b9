"""The serial console through the real app, on the fake driver (its console echoes): the page,
the panel's WebSocket (origin, session, owner, one client at a time, bytes both ways, the
stream always released), the boot log of a stopped VM, Ctrl-Alt-Del, and the API's socket."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.catalog import make_product
from tests.factories.compute import make_node, make_pool
from tests.helpers import JobRunner, bearer, login
from tests.web.conftest import csrf_of, log_in
from vmcloud.accounts import api_tokens
from vmcloud.accounts.models import User
from vmcloud.app import create_app
from vmcloud.audit.models import AuditLog
from vmcloud.billing import flows
from vmcloud.compute import console, nodes
from vmcloud.compute.drivers.base import Console
from vmcloud.compute.drivers.fake import FakeDriver
from vmcloud.compute.models import Instance
from vmcloud.compute.schemas import InstanceCreate
from vmcloud.compute.tiny_image import READY_MARKER
from vmcloud.config import Settings
from vmcloud.web.customer import console as panel_console

ORIGIN = {"origin": "https://testserver"}


@dataclass
class Running:
    owner: User
    instance: Instance
    driver: FakeDriver

    @property
    def ws(self) -> str:
        # wss: the panel's cookies are Secure, and the test client's default is ws://.
        return f"wss://testserver/instances/{self.instance.id}/console/ws"

    @property
    def page(self) -> str:
        return f"/instances/{self.instance.id}/console"


@pytest.fixture
def running(db: Session, job_runner: JobRunner) -> Running:
    node = make_node(db)
    make_pool(db, "198.18.77.0/28")
    plan = make_product(
        db,
        slug="console-plan",
        specs_json={"vcpus": 1, "memory_mb": 512, "disk_gb": 10},
        pricing_json={"hourly": "0.0074", "monthly": "4.00", "yearly": "40.00"},
    )
    owner = make_user(db, balance="50.00")
    body = InstanceCreate(
        name="console-vm", product=plan.slug, region="local", image="tiny-linux",
        billing_cycle="monthly",
    )  # fmt: skip
    instance = flows.order_instance(db=db, owner=owner, body=body)
    job_runner.run("compute.")
    db.refresh(instance)
    assert instance.status == "running"
    driver = nodes.driver_for(node)
    assert isinstance(driver, FakeDriver)
    return Running(owner, instance, driver)


@pytest.fixture
def owner_panel(panel: TestClient, running: Running) -> TestClient:
    log_in(panel, running.owner.username, PASSWORD)
    return panel


@pytest.fixture(autouse=True)
def _no_holders() -> Iterator[None]:
    yield
    assert not console._holders, "a console was left held"


def _refused(client: TestClient, url: str, **options: Any) -> int:
    """The HTTP status refusing a WebSocket handshake."""
    with pytest.raises(WebSocketDenialResponse) as refused:
        client.websocket_connect(url, **options).__enter__()
    return refused.value.status_code


def _closed_with(ws: object, code: int) -> None:
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_bytes()  # type: ignore[attr-defined]
    assert closed.value.code == code


def _slow_open(
    driver: FakeDriver, monkeypatch: pytest.MonkeyPatch, delay: float
) -> threading.Event:
    """The driver attaches ``delay`` seconds late (a slow node); the event is set once it did."""
    attached = threading.Event()
    real = driver.open_console

    def open_console(instance_id: uuid.UUID, loop: asyncio.AbstractEventLoop) -> Console:
        time.sleep(delay)
        try:
            return real(instance_id, loop)
        finally:
            attached.set()

    monkeypatch.setattr(driver, "open_console", open_console)
    return attached


def _soon(condition: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_the_page_has_the_terminal_and_its_own_csp(
    owner_panel: TestClient, running: Running
) -> None:
    page = owner_panel.get(running.page)
    assert page.status_code == 200
    assert "strict-transport-security" not in page.headers  # the public URL is http
    assert f'data-socket="/instances/{running.instance.id}/console/ws"' in page.text
    assert "/static/console.js" in page.text and "Ctrl-Alt-Del" in page.text
    csp = page.headers["content-security-policy"]
    assert "style-src 'self' 'unsafe-inline'" in csp and "script-src 'self';" in csp
    # The instance page links to it without htmx's boost (the page needs its own CSP).
    detail = owner_panel.get(f"/instances/{running.instance.id}").text
    assert f'href="{running.page}" hx-boost="false"' in detail


def test_bytes_go_both_ways_and_the_console_is_released(
    owner_panel: TestClient, running: Running
) -> None:
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"echo $((6*7))\r")
        assert ws.receive_bytes() == b"echo $((6*7))\r\n"
        ws.send_text("ls\r")  # text frames are keystrokes too
        assert ws.receive_bytes() == b"ls\r\n"
        assert running.driver.vms[running.instance.id].attached is not None
    # The client left: the driver's console is closed and the next client gets it.
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"x")
        assert ws.receive_bytes() == b"x"
    assert running.driver.vms[running.instance.id].attached is None


def test_a_second_client_is_told_another_tab_holds_it(
    owner_panel: TestClient, running: Running
) -> None:
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as first:
        with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as second:
            _closed_with(second, console.CLOSE_BUSY)
        first.send_bytes(b"still mine\r")
        assert first.receive_bytes() == b"still mine\r\n"


def test_the_hypervisor_refusing_a_second_client_is_busy_too(
    owner_panel: TestClient, running: Running
) -> None:
    import asyncio

    # Another process holds it: this process's registry does not know, the driver refuses.
    running.driver.open_console(running.instance.id, asyncio.new_event_loop())
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        _closed_with(ws, console.CLOSE_BUSY)
    running.driver.vms[running.instance.id].attached = None


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "https://testserver.evil.example"},
        {"origin": "http://testserver"},  # the page was not this site's (https)
        {"origin": "https://testserver:8443"},
        {"origin": "https://user@testserver"},
        {"origin": "null"},
        {},
    ],
)
def test_a_socket_from_another_origin_is_refused_before_the_handshake(
    owner_panel: TestClient, running: Running, headers: dict[str, str]
) -> None:
    assert _refused(owner_panel, running.ws, headers=headers) == 403
    assert running.driver.vms[running.instance.id].attached is None


def test_no_session_and_another_users_console_are_refused(
    panel: TestClient, db: Session, running: Running
) -> None:
    assert _refused(panel, running.ws, headers=ORIGIN) == 401
    intruder = make_user(db)
    log_in(panel, intruder.username, PASSWORD)
    assert _refused(panel, running.ws, headers=ORIGIN) == 404
    assert panel.get(running.page).status_code == 404
    assert running.driver.vms[running.instance.id].attached is None


def test_the_socket_ends_when_the_vm_stops(owner_panel: TestClient, running: Running) -> None:
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"a")
        assert ws.receive_bytes() == b"a"
        running.driver.stop(running.instance.id)
        _closed_with(ws, console.CLOSE_ENDED)
    assert running.driver.vms[running.instance.id].attached is None


def test_the_socket_ends_with_the_login(
    owner_panel: TestClient, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "RECHECK_SECONDS", 0.05)
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"a")
        assert ws.receive_bytes() == b"a"
        token = csrf_of(owner_panel.get("/account").text)
        assert owner_panel.post("/logout", data={"csrftoken": token}).status_code == 303
        _closed_with(ws, console.CLOSE_LOGGED_OUT)


def test_a_database_error_in_the_recheck_keeps_the_console_open(
    owner_panel: TestClient, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "RECHECK_SECONDS", 0.05)
    checks = []
    real = panel_console._check

    def failing_recheck(factory: sessionmaker[Session], *args: Any) -> object:
        checks.append(args)
        if len(checks) == 1:
            return real(factory, *args)
        with factory() as db:
            return db.execute(text("SELECT 1 / 0")).scalar()  # the database refuses

    monkeypatch.setattr(panel_console, "_check", failing_recheck)
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        assert _soon(lambda: len(checks) >= 3)
        ws.send_bytes(b"still here\r")
        assert ws.receive_bytes() == b"still here\r\n"


def test_an_oversized_frame_closes_the_socket(owner_panel: TestClient, running: Running) -> None:
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"x" * (console.MAX_INPUT_FRAME + 1))
        _closed_with(ws, console.CLOSE_TOO_BIG)


def test_a_stopped_vm_shows_its_boot_log_read_only(
    owner_panel: TestClient, db: Session, running: Running
) -> None:
    running.driver.stop(running.instance.id)
    running.instance.status = "stopped"
    db.flush()
    page = owner_panel.get(running.page)
    assert page.status_code == 200
    assert READY_MARKER in page.text and 'id="boot-log"' in page.text
    assert "data-socket" not in page.text
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        _closed_with(ws, console.CLOSE_UNAVAILABLE)


def test_ctrl_alt_del_reaches_a_running_vm(
    owner_panel: TestClient, db: Session, running: Running
) -> None:
    url = f"{running.page}/ctrl-alt-del"
    token = csrf_of(owner_panel.get(running.page).text)
    answer = owner_panel.post(url, data={"csrftoken": token})
    assert answer.status_code == 303 and answer.headers["location"] == running.page
    assert running.driver.vms[running.instance.id].ctrl_alt_del == 1
    running.instance.status = "stopped"
    db.flush()
    refused = owner_panel.post(url, data={"csrftoken": token})
    assert refused.status_code == 409 and "not running" in refused.text
    assert running.driver.vms[running.instance.id].ctrl_alt_del == 1


def test_the_api_socket_takes_a_bearer_token(
    client: TestClient, db: Session, running: Running
) -> None:
    url = f"/api/v1/instances/{running.instance.id}/console"
    assert _refused(client, url) == 401
    assert _refused(client, url, headers={"authorization": "Bearer not-a-token"}) == 401
    intruder = make_user(db)
    headers = bearer(login(client, intruder.username, PASSWORD))
    assert _refused(client, url, headers=headers) == 404
    headers = bearer(login(client, running.owner.username, PASSWORD))
    with client.websocket_connect(url, headers=headers) as ws:
        ws.send_bytes(b"uname\r")
        assert ws.receive_bytes() == b"uname\r\n"


def test_support_staff_cannot_type_into_a_customers_vm(
    client: TestClient, db: Session, running: Running
) -> None:
    url = f"/api/v1/instances/{running.instance.id}/console"
    for role, status in (("support", 404), ("admin", None)):
        staff = make_user(db, role=role)
        headers = bearer(login(client, staff.username, PASSWORD))
        if status is None:
            with client.websocket_connect(url, headers=headers) as ws:
                ws.send_bytes(b"y")
                assert ws.receive_bytes() == b"y"
            continue
        assert _refused(client, url, headers=headers) == status


def test_a_personal_token_opens_its_owners_console_within_its_scope(
    client: TestClient, db: Session, running: Running
) -> None:
    url = f"/api/v1/instances/{running.instance.id}/console"
    _, full = api_tokens.create_token(
        db=db, user=running.owner, name="ci", scopes=["instances:write"], expires_at=None
    )
    _, read_only = api_tokens.create_token(
        db=db, user=running.owner, name="ro", scopes=["instances:read"], expires_at=None
    )
    admin = make_user(db, role="admin")
    _, admins = api_tokens.create_token(
        db=db, user=admin, name="adm", scopes=["instances:write"], expires_at=None
    )
    db.commit()
    with client.websocket_connect(url, headers={"authorization": f"Bearer {full}"}) as ws:
        ws.send_bytes(b"id\r")
        assert ws.receive_bytes() == b"id\r\n"
    # Typing is a write; and a token acts as its owner only, whatever the owner's role.
    assert _refused(client, url, headers={"authorization": f"Bearer {read_only}"}) == 403
    assert _refused(client, url, headers={"authorization": f"Bearer {admins}"}) == 404


def test_a_node_that_does_not_attach_in_time_closes_the_socket_and_frees_the_console(
    owner_panel: TestClient, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "OPEN_TIMEOUT", 0.2)
    attached = _slow_open(running.driver, monkeypatch, 1.0)
    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:
        ws.send_bytes(b"x")
        _closed_with(ws, console.CLOSE_FAILED)
    assert not console._holders  # the next tab may try again at once
    # The console the node attached late is closed: nobody holds it.
    assert attached.wait(5)
    assert _soon(lambda: running.driver.vms[running.instance.id].attached is None)


def test_a_socket_cancelled_while_the_console_opens_still_closes_it(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    attached = _slow_open(running.driver, monkeypatch, 0.3)
    target = console.Target(running.instance.id, running.driver)

    async def allowed() -> bool:
        return True

    async def scenario() -> None:
        # The socket is never touched: the task is cancelled while the node attaches.
        socket = cast(WebSocket, object())
        serving = asyncio.create_task(console.serve(socket, target, allowed))
        await asyncio.sleep(0.1)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not console._holders
        deadline = time.monotonic() + 5
        vm = running.driver.vms[running.instance.id]
        while not (attached.is_set() and vm.attached is None) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert attached.is_set() and vm.attached is None, "the late console was left open"

    asyncio.run(scenario())


def test_with_a_public_url_the_origin_is_that_url(
    app_settings: Settings,
    engine: Engine,
    session_factory: sessionmaker[Session],
    running: Running,
) -> None:
    """Behind a proxy the request's own address is not the browser's: the configured public
    URL is, in scheme, host and port. An https one also sends HSTS with the panel's pages."""
    public = app_settings.model_copy(update={"base_url": "https://panel.example:8443"})
    proxied = create_app(public, engine=engine, session_factory=session_factory)
    with TestClient(proxied, base_url="https://testserver", follow_redirects=False) as panel:
        log_in(panel, running.owner.username, PASSWORD)
        page = panel.get(running.page)
        assert page.headers["strict-transport-security"] == "max-age=31536000"
        for origin in ("https://testserver", "http://panel.example:8443", "https://panel.example"):
            assert _refused(panel, running.ws, headers={"origin": origin}) == 403
        with panel.websocket_connect(
            running.ws, headers={"origin": "https://panel.example:8443"}
        ) as ws:
            ws.send_bytes(b"z")
            assert ws.receive_bytes() == b"z"


def test_an_admin_opening_a_customers_console_is_audited_once(
    client: TestClient, owner_panel: TestClient, db: Session, running: Running
) -> None:
    def opened() -> list[AuditLog]:
        found = select(AuditLog).where(AuditLog.action == "instance.console_opened")
        return list(db.scalars(found))

    with owner_panel.websocket_connect(running.ws, headers=ORIGIN) as ws:  # the owner's own
        ws.send_bytes(b"a")
        assert ws.receive_bytes() == b"a"
    assert opened() == []
    admin = make_user(db, role="admin")
    headers = bearer(login(client, admin.username, PASSWORD))
    url = f"/api/v1/instances/{running.instance.id}/console"
    with client.websocket_connect(url, headers=headers) as ws:
        ws.send_bytes(b"b")
        assert ws.receive_bytes() == b"b"
    [row] = opened()
    assert (row.user_id, row.entity_type, row.entity_id) == (
        admin.id,
        "instance",
        running.instance.id,
    )
