"""Arranging the live server's database with the real services (users with a balance, a plan,
a node to order on), and logging a browser in through the panel's login form."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyotp
from playwright.sync_api import BrowserContext, Page, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from tests.factories.compute import make_pool
from tests.web.browser.server import LiveServer
from vmcloud.accounts import two_factor as second_factor
from vmcloud.accounts.models import User
from vmcloud.audit import service as audit
from vmcloud.billing import adjustments, flows
from vmcloud.catalog import service as catalog
from vmcloud.catalog.schemas import ProductCreate
from vmcloud.compute import nodes
from vmcloud.compute.models import Instance, Node
from vmcloud.compute.schemas import InstanceCreate, NodeCreate

T = TypeVar("T")
_counter = itertools.count(1)
# Each browser context calls from an address of its own (sent as X-Forwarded-For, which the
# live server trusts from 127.0.0.1): per-address rate limits then count per test.
_addresses = (str(a) for a in ipaddress.ip_network("198.18.0.0/15").hosts())
POOL_CIDR = "100.64.0.0/20"  # the live server's one address pool: 4093 instances


def client_address() -> str:
    return next(_addresses)


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(...)`` on a thread of its own. Under Playwright's sync API the test's thread has an
    asyncio loop running (Playwright's, in a greenlet), and code that refuses to block an
    event loop (password hashing) raises there."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="off-loop") as pool:
        return pool.submit(fn, *args, **kwargs).result()


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}x{uuid.uuid4().hex[:6]}"


# -- users -----------------------------------------------------------------------------------


@dataclass
class Customer:
    id: uuid.UUID
    email: str
    username: str
    password: str
    role: str
    totp_secret: str | None = None
    recovery_codes: list[str] = field(default_factory=list)
    _last_step: int = -1

    def totp_code(self) -> str:
        """A code the server has not seen yet: each code is good once, so a second login in
        the same 30 s uses the next step's code (the window allows one step ahead), and a
        third waits for the clock."""
        assert self.totp_secret, "this user has no second factor"
        totp = pyotp.TOTP(self.totp_secret)
        while True:
            now = int(time.time() // totp.interval)
            step = max(now, self._last_step + 1)
            if step <= now + 1:
                self._last_step = step
                return str(totp.generate_otp(step))
            time.sleep(0.5)


def _staff(live: LiveServer) -> uuid.UUID:
    """The admin in whose name the harness credits balances (made once per server)."""
    if "staff_id" not in live.memo:
        with live.transaction() as db:
            name = _unique("harness-admin-")
            staff = make_user(db, role="admin", username=name, email=f"{name}@example.com")
            live.memo["staff_id"] = staff.id
    staff_id: uuid.UUID = live.memo["staff_id"]
    return staff_id


def make_customer(
    live: LiveServer,
    *,
    verified: bool = True,
    balance: Decimal | str = Decimal("0"),
    two_factor: bool = False,
    role: str = "customer",
    password: str = PASSWORD,
) -> Customer:
    """A new user of the live server, committed. ``balance`` arrives as a staff credit (the
    adjustments service, as an admin's credit does), so the ledger and the balance agree;
    ``two_factor`` enrols TOTP through the 2FA service (codes: :meth:`Customer.totp_code`)."""
    return off_loop(
        _make_customer,
        live,
        verified=verified,
        balance=balance,
        two_factor=two_factor,
        role=role,
        password=password,
    )


def _make_customer(
    live: LiveServer,
    *,
    verified: bool,
    balance: Decimal | str,
    two_factor: bool,
    role: str,
    password: str,
) -> Customer:
    admin_id = _staff(live) if Decimal(balance) > 0 else None
    name = _unique("cust")
    with live.transaction() as db:
        user = make_user(
            db,
            role=role,
            email_verified=verified,
            password=password,
            username=name,
            email=f"{name}@example.com",
        )
        customer = Customer(
            id=user.id, email=user.email, username=name, password=password, role=role
        )
        if admin_id is not None:
            admin = db.get(User, admin_id)
            assert admin is not None
            audit.context_of(db).actor_id = admin.id
            adjustments.credit(
                db=db, user_id=user.id, amount=str(balance), reason="browser test", admin=admin
            )
        if two_factor:
            _enrol(live, db, user, customer)
    return customer


def _enrol(live: LiveServer, db: Session, user: User, customer: Customer) -> None:
    setup = second_factor.setup(db=db, settings=live.settings, user=user)
    # Confirm with the previous step's code (the window accepts it), so the current one is
    # still unused for the first login.
    previous = int(time.time() // 30) - 1
    codes = second_factor.enable(
        db=db,
        limiter=live.app.state.rate_limiter,
        settings=live.settings,
        user=user,
        code=str(pyotp.TOTP(setup.secret).generate_otp(previous)),
    )
    customer.totp_secret = setup.secret
    customer.recovery_codes = list(codes.recovery_codes)
    customer._last_step = previous


# -- what an order needs: a plan, a node, addresses --------------------------------------------


@dataclass(frozen=True)
class Offer:
    """Where an order can go: the plan's slug, a node that has room for it, the region and
    image (the seeded ``local`` region and ``tiny-linux`` image)."""

    plan: str
    node_id: uuid.UUID
    node_name: str
    region: str = "local"
    image: str = "tiny-linux"


def add_plan(live: LiveServer, **overrides: object) -> str:
    """A plan (product) through the catalogue service; returns its slug."""
    slug = _unique("plan-")
    body: dict[str, object] = {
        "name": f"Plan {slug}",
        "slug": slug,
        "description": "A plan for browser tests",
        "specs_json": {"vcpus": 1, "memory_mb": 192, "disk_gb": 1, "bandwidth_gb": 100},
        "pricing_json": {"hourly": "0.002", "monthly": "1.00", "yearly": "10.00"},
        "features_json": ["1 IPv4 address"],
    }
    body.update(overrides)
    with live.transaction() as db:
        catalog.create_product(db=db, body=ProductCreate.model_validate(body))
    return slug


def ensure_pool(live: LiveServer) -> None:
    """The region's address pool (one per server, large enough for the whole run)."""
    if live.memo.get("pool"):
        return
    with live.transaction() as db:
        make_pool(db, POOL_CIDR, name=_unique("browser-pool-"))
    live.memo["pool"] = True


def add_node(live: LiveServer, **fields: object) -> Node:
    """A node through the node service (``allow_fake`` as the live server allows it)."""
    values: dict[str, object] = {
        "name": _unique("node-"),
        "region": "local",
        "vcpus": 64,
        "memory_mb": 256 * 1024,
        "disk_gb": 10_000,
    }
    values.update(fields)
    ensure_pool(live)
    with live.transaction() as db:
        return nodes.create_node(
            db=db,
            body=NodeCreate.model_validate(values),
            allow_fake=live.settings.allow_fake_driver,
        )


def add_fake_node(live: LiveServer, *, variant: str = "", **fields: object) -> Node:
    """A node on the in-memory driver; ``variant`` picks a failure mode (drivers.fake)."""
    name = str(fields.pop("name", _unique("fake-")))
    query = f"?variant={variant}" if variant else ""
    return add_node(
        live,
        name=name,
        driver="fake",
        uri=f"fake://{name}{query}",
        storage_dir="/var/lib/vmcloud/disks",
        **fields,
    )


def offer_on(node: Node, plan: str) -> Offer:
    return Offer(plan=plan, node_id=node.id, node_name=node.name)


@contextlib.contextmanager
def only_node(live: LiveServer, node_id: uuid.UUID) -> Iterator[None]:
    """Within the block, every other enabled node is disabled: orders land on ``node_id``
    (the scheduler chooses among enabled nodes with room). They are enabled again after."""
    with live.transaction() as db:
        others = list(
            db.scalars(
                update(Node)
                .where(Node.id != node_id, Node.status == "enabled")
                .values(status="disabled")
                .returning(Node.id)
            )
        )
    try:
        yield
    finally:
        with live.transaction() as db:
            if others:
                db.execute(update(Node).where(Node.id.in_(others)).values(status="enabled"))


def node_named(live: LiveServer, name: str) -> Node:
    with live.transaction() as db:
        node = db.scalar(select(Node).where(Node.name == name))
        assert node is not None, name
        return node


# -- logging in --------------------------------------------------------------------------------


def login(
    page: Page,
    live: LiveServer,
    user: Customer,
    *,
    landing: str = "/instances",
    remember: bool = True,
) -> None:
    """Log in through the panel's form (and its second step, ``/login/2fa``, when the user has
    2FA), wait for ``landing``, and keep the browser session for :func:`sign_in`."""
    page.goto(f"{live.url}/login")
    page.locator('input[name="login"]').fill(user.username)
    page.locator('input[name="password"]').fill(user.password)
    page.get_by_role("button", name="Log in").click()
    if user.totp_secret:
        expect(page).to_have_url(re.compile(rf"^{re.escape(live.url)}/login/2fa"))
        code = page.locator('input[name="code"]')
        code.fill(user.totp_code())
        code.press("Enter")  # submits the code's own form, whatever its button says
    path = re.escape(landing.rstrip("/"))
    expect(page).to_have_url(re.compile(rf"^{re.escape(live.url)}{path}/?(\?.*)?$"))
    if remember:
        live.storage_states[user.id] = page.context.storage_state()


def sign_in(page: Page, live: LiveServer, user: Customer, *, landing: str = "/instances") -> None:
    """Be logged in as ``user`` on ``page``'s context, at ``landing``: with the cookies a
    previous :func:`login` saved when they are still good, else through the form."""
    state = live.storage_states.get(user.id)
    if state is not None:
        _add_cookies(page.context, state)
        page.goto(f"{live.url}{landing}")
        if urlpath(page.url).rstrip("/") == landing.rstrip("/"):
            return
        live.storage_states.pop(user.id, None)  # that session has ended (logout, revocation)
    login(page, live, user, landing=landing)


def _add_cookies(context: BrowserContext, state: dict[str, object]) -> None:
    cookies = state.get("cookies") or []
    assert isinstance(cookies, list)
    context.add_cookies(cookies)


def urlpath(url: str) -> str:
    return urlsplit(url).path


# -- waiting on what the worker does -----------------------------------------------------------

# A page that was not reloaded keeps what a script put on its window.
MARK = "window.__sameDocument = 'yes'"
STILL_MARKED = "window.__sameDocument"


def wait_status(live: LiveServer, instance_id: uuid.UUID, status: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with live.transaction() as db:
            found = db.get(Instance, instance_id)
            current = found.status if found else None
        if current == status:
            return
        assert time.monotonic() < deadline, f"still {current}, not {status}"
        time.sleep(0.1)


def wait_for_token(live: LiveServer, email: str, timeout: float = 10.0) -> str:
    """The token of the last mail to ``email`` (the worker sends mail in the background)."""
    deadline = time.monotonic() + timeout
    while not live.mailbox.to(email):
        assert time.monotonic() < deadline, f"no mail to {email}"
        time.sleep(0.1)
    return live.mailbox.last_token(email)


def order_instance(
    live: LiveServer, user: Customer, offer: Offer, name: str, cycle: str = "monthly"
) -> uuid.UUID:
    """An instance ordered for ``user`` as the API orders it (billing's flow), committed."""
    with live.transaction() as db:
        owner = db.get(User, user.id)
        assert owner is not None
        body = InstanceCreate(
            name=name, product=offer.plan, region=offer.region, image=offer.image,
            billing_cycle=cycle,
        )  # fmt: skip
        return flows.order_instance(db=db, owner=owner, body=body).id
