"""The browser-test harness itself: the guard's detections catch what they must (against a
throw-away site on another port), the live server is up with its worker, the arrangement
helpers leave an orderable cloud and consistent balances, and the login helper works."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from tests.web.browser.conftest import PanelContexts
from tests.web.browser.guard import (
    BINDING,
    PageGuard,
    assert_no_horizontal_scroll,
    horizontal_overflow,
    leaves_origin,
)
from tests.web.browser.helpers import Offer, login, make_customer, sign_in, urlpath
from tests.web.browser.server import LiveServer, serve_in_thread
from vmcloud.accounts.models import RefreshToken, User
from vmcloud.billing.models import Transaction
from vmcloud.compute import nodes
from vmcloud.compute.models import Node
from vmcloud.compute.tiny_image import READY_MARKER

# The panel's policy (PANEL.md, "Headers on every page").
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
HEAD = '<!doctype html><html><head><meta name="viewport" content="width=device-width">'


def _site() -> Starlette:
    """Pages that each break one rule, and one that breaks none. ``localhost`` is another
    origin than ``127.0.0.1`` on the same port, so nothing leaves the machine."""

    def other(request: Request) -> str:
        return f"http://localhost:{request.url.port}"

    async def foreign_image(request: Request) -> HTMLResponse:
        return HTMLResponse(f'{HEAD}</head><body><img src="{other(request)}/pixel.png"></body>')

    async def csp_violation(request: Request) -> HTMLResponse:
        body = f"{HEAD}</head><body><p>x</p><script>document.title = 'ran'</script></body>"
        return HTMLResponse(body, headers={"Content-Security-Policy": CSP})

    async def wide(request: Request) -> HTMLResponse:
        return HTMLResponse(f'{HEAD}</head><body><div id="banner" style="width:800px">w</div>')

    async def clean(request: Request) -> HTMLResponse:
        body = f'{HEAD}<title>clean</title></head><body><img src="/pixel.png"><p>ok</p></body>'
        return HTMLResponse(body, headers={"Content-Security-Policy": CSP})

    async def pixel(request: Request) -> Response:
        return Response(PIXEL, media_type="image/png")

    return Starlette(
        routes=[
            Route("/foreign-image", foreign_image),
            Route("/csp-violation", csp_violation),
            Route("/wide", wide),
            Route("/clean", clean),
            Route("/pixel.png", pixel),
            Route("/favicon.ico", pixel),
        ]
    )


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with serve_in_thread(_site(), name="throw-away-site") as url:
        yield url


@pytest.fixture
def watched(browser: Browser, site: str) -> Iterator[tuple[Page, PageGuard]]:
    context = browser.new_context()
    guard = PageGuard(site)
    guard.attach(context)
    try:
        yield context.new_page(), guard
    finally:
        context.close()


# -- the guard's detections ------------------------------------------------------------------


def test_origins() -> None:
    origin = "http://127.0.0.1:8123"
    assert not leaves_origin("http://127.0.0.1:8123/static/app.js", origin)
    assert not leaves_origin("ws://127.0.0.1:8123/instances/1/console/ws", origin)
    assert not leaves_origin("data:image/png;base64,AAAA", origin)
    assert not leaves_origin("blob:http://127.0.0.1:8123/5b1c", origin)
    assert leaves_origin("http://localhost:8123/pixel.png", origin)
    assert leaves_origin("http://127.0.0.1:8124/", origin)
    assert leaves_origin("https://127.0.0.1:8123/", origin)
    assert leaves_origin("wss://cdn.example.com/x", origin)
    assert not leaves_origin("https://example.com/a", "https://example.com:443")


def test_a_request_to_another_origin_is_caught(watched: tuple[Page, PageGuard], site: str) -> None:
    page, guard = watched
    page.goto(f"{site}/foreign-image")
    guard.settle()
    foreign = f"GET http://localhost:{site.rsplit(':', 1)[1]}/pixel.png"
    assert guard.foreign_requests == [foreign]
    assert guard.csp_violations == []  # no policy on that page
    assert any("another origin" in problem for problem in guard.problems())


def test_a_csp_violation_is_caught_from_the_console_and_the_dom_event(
    watched: tuple[Page, PageGuard], site: str
) -> None:
    page, guard = watched
    page.goto(f"{site}/csp-violation")
    guard.settle()
    assert page.title() == ""  # the inline script was blocked
    console = [v for v in guard.csp_violations if v.startswith("console:")]
    event = [v for v in guard.csp_violations if v.startswith("event:")]
    assert console and "script-src" in console[0], guard.csp_violations
    # The listener, injected through the DevTools protocol, runs under script-src 'self'.
    assert event and "script-src" in event[0], guard.csp_violations
    assert guard.foreign_requests == []


def test_a_page_wider_than_a_phone_is_caught(watched: tuple[Page, PageGuard], site: str) -> None:
    page, guard = watched
    page.goto(f"{site}/wide")
    with pytest.raises(AssertionError, match=r"scrolls sideways at 390 px.*div#banner"):
        assert_no_horizontal_scroll(page, wait=0.2)
    assert page.viewport_size == {"width": 1280, "height": 720}  # put back
    assert any("scrolls sideways" in problem for problem in guard.problems())


def test_a_clean_page_passes_and_evaluate_works_under_the_csp(
    watched: tuple[Page, PageGuard], site: str
) -> None:
    page, guard = watched
    page.goto(f"{site}/clean")
    expect(page).to_have_title("clean")
    assert_no_horizontal_scroll(page)
    assert horizontal_overflow(page)[1] == 1280
    # Neither goes through the page's script-src: both run over the DevTools protocol.
    assert page.evaluate("() => document.images[0].complete") is True
    page.wait_for_function("() => document.readyState === 'complete'")
    assert guard.problems() == []


def test_the_teardown_check_fails_on_any_guarded_context(new_context: Any, site: str) -> None:
    contexts = PanelContexts(new_context, SimpleNamespace(url=site))  # type: ignore[arg-type]
    contexts().new_page().goto(f"{site}/clean")
    contexts.check()
    second = contexts()
    second.new_page().goto(f"{site}/foreign-image")
    with pytest.raises(AssertionError, match="request to another origin: GET http://localhost"):
        contexts.check()


# -- the live server -------------------------------------------------------------------------


def test_the_live_server_is_up_with_its_worker(page: Page, live_server: LiveServer) -> None:
    health = page.goto("/healthz")
    assert health is not None and health.status == 200
    assert health.json() == {"status": "ok"}
    ready = page.goto("/readyz")
    assert ready is not None and ready.status == 200, ready.text() if ready else None
    assert ready.json()["worker"] == "running"
    assert page.url == f"{live_server.url}/readyz"


def test_each_context_is_a_client_of_its_own(
    new_panel_context: PanelContexts, live_server: LiveServer
) -> None:
    first, second = new_panel_context(), new_panel_context(address="203.0.113.9")
    assert first.request.get("/healthz").ok
    assert second.request.get("/healthz").ok
    assert first is not second and first.cookies() == []


def test_customers_get_their_balance_through_the_ledger(live_server: LiveServer) -> None:
    rich = make_customer(live_server, balance=Decimal("12.34"))
    poor = make_customer(live_server, verified=False)
    with live_server.transaction() as db:
        user = db.get(User, rich.id)
        assert user is not None and user.balance == Decimal("12.34")
        entries = db.scalars(select(Transaction).where(Transaction.user_id == rich.id)).all()
        assert [(e.type, e.amount) for e in entries] == [("credit", Decimal("12.34"))]
        other = db.get(User, poor.id)
        assert other is not None and (other.balance, other.email_verified) == (Decimal(0), False)
        none = select(func.count()).where(Transaction.user_id == poor.id)
        assert db.scalar(none) == 0
    assert rich.username != poor.username


def test_a_second_factor_user_logs_in_twice_with_fresh_codes(
    context: BrowserContext, live_server: LiveServer
) -> None:
    user = make_customer(live_server, two_factor=True)
    assert user.totp_secret and len(user.recovery_codes) == 10
    for _ in range(2):  # each code is good once: the second login needs the next step's
        body = {"login": user.username, "password": user.password, "totp_code": user.totp_code()}
        answer = context.request.post("/api/v1/auth/login", data=body)
        assert answer.status == 200, answer.text()


def _order(context: BrowserContext, user: Any, offer: Offer, name: str) -> dict[str, Any]:
    tokens = context.request.post(
        "/api/v1/auth/login", data={"login": user.username, "password": user.password}
    )
    assert tokens.ok, tokens.text()
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    body = {
        "name": name,
        "product": offer.plan,
        "region": offer.region,
        "image": offer.image,
        "billing_cycle": "hourly",
    }
    created = context.request.post("/api/v1/instances", data=body, headers=headers)
    assert created.status == 202, created.text()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = context.request.get(f"/api/v1/instances/{created.json()['id']}", headers=headers)
        found: dict[str, Any] = shown.json()
        if found["status"] not in ("pending", "provisioning", "starting"):
            return found
        time.sleep(0.1)
    raise AssertionError(f"still {found['status']} after 60 s")


def test_an_order_on_the_fake_node_runs_through_the_worker(
    context: BrowserContext, live_server: LiveServer, fake_offer: Offer
) -> None:
    user = make_customer(live_server, balance="5.00")
    instance = _order(context, user, fake_offer, "fake-one")
    assert instance["status"] == "running", instance
    with live_server.transaction() as db:
        node = db.get(Node, fake_offer.node_id)
        assert node is not None and node.allocated_memory_mb >= 192


def test_an_order_on_the_real_libvirt_node_boots_the_tiny_guest(
    context: BrowserContext, live_server: LiveServer, libvirt_live_node: Offer
) -> None:
    user = make_customer(live_server, balance="5.00")
    instance = _order(context, user, libvirt_live_node, "real-one")
    assert instance["status"] == "running", instance
    with live_server.transaction() as db:
        node = db.get(Node, libvirt_live_node.node_id)
        assert node is not None and node.driver == "libvirt"
    driver = nodes.driver_for(node)
    deadline = time.monotonic() + 60
    while READY_MARKER not in driver.console_output(uuid.UUID(instance["id"])):
        assert time.monotonic() < deadline, "the tiny guest did not come up"
        time.sleep(0.25)


# -- logging in -------------------------------------------------------------------------------


def test_login_lands_on_instances_and_is_remembered(
    new_panel_context: PanelContexts, live_server: LiveServer
) -> None:
    user = make_customer(live_server)
    first = new_panel_context().new_page()
    shown = first.goto("/login")
    assert shown is not None and "script-src 'self'" in shown.headers["content-security-policy"]
    # The binding the guard's violation listener reports through works under the panel's CSP.
    assert first.evaluate(f"typeof window.{BINDING}") == "function"
    login(first, live_server, user)
    cookies = {c["name"] for c in first.context.cookies()}
    assert "__Host-vmc_session" in cookies, cookies
    second = new_panel_context().new_page()
    sign_in(second, live_server, user)  # from the saved session, no form
    assert urlpath(second.url) == "/instances"
    with live_server.transaction() as db:
        logins = select(func.count(func.distinct(RefreshToken.family_id))).where(
            RefreshToken.user_id == user.id
        )
        assert db.scalar(logins) == 1
