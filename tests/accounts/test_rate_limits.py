"""Rate limits on the account endpoints: 429 with Retry-After, per address and per account,
and a fresh window lets the caller in again."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from tests.factories.accounts import PASSWORD, make_user
from vmcloud.accounts import deps as accounts_deps
from vmcloud.accounts import limits, passwords
from vmcloud.app import create_app
from vmcloud.core import clock, ratelimit

LOGIN = "/api/v1/auth/login"


@dataclass
class HeldClock:
    now: datetime


@pytest.fixture(autouse=True)
def limiter_clock(monkeypatch: pytest.MonkeyPatch) -> HeldClock:
    """Counters are per fixed window (as short as a minute): hold the limiter's clock mid-window
    so a run that straddles a boundary cannot see a count start again."""
    held = HeldClock(clock.utcnow().replace(minute=30, second=30, microsecond=0))
    monkeypatch.setattr(ratelimit, "utcnow", lambda: held.now)
    return held


def _shift_time(held: HeldClock, delta: timedelta) -> None:
    held.now += delta


def test_login_attempts_per_account_hit_429_then_reset(
    client: TestClient, db: Session, limiter_clock: HeldClock
) -> None:
    make_user(db, username="sam")
    for _ in range(limits.LOGIN_PER_ACCOUNT.hits):
        assert client.post(LOGIN, json={"login": "sam", "password": "wrong!"}).status_code == 401
    blocked = client.post(LOGIN, json={"login": "sam", "password": PASSWORD})
    assert blocked.status_code == 429
    assert blocked.json()["type"] == "/problems/rate-limited"
    retry_after = int(blocked.headers["retry-after"])
    assert 1 <= retry_after <= limits.LOGIN_PER_ACCOUNT.period
    # Once the window has passed, the right password works again.
    _shift_time(limiter_clock, timedelta(seconds=limits.LOGIN_PER_ACCOUNT.period))
    assert client.post(LOGIN, json={"login": "sam", "password": PASSWORD}).status_code == 200


def test_account_limit_counts_any_spelling_of_the_login(client: TestClient, db: Session) -> None:
    make_user(db, username="tess")
    for i in range(limits.LOGIN_PER_ACCOUNT.hits):
        name = "TESS" if i % 2 else "tess"
        client.post(LOGIN, json={"login": name, "password": "wrong!"})
    assert client.post(LOGIN, json={"login": "Tess", "password": PASSWORD}).status_code == 429


def test_unknown_accounts_are_limited_the_same(client: TestClient) -> None:
    statuses = [
        client.post(LOGIN, json={"login": "ghost", "password": "wrong!"}).status_code
        for _ in range(limits.LOGIN_PER_ACCOUNT.hits + 1)
    ]
    assert statuses[-1] == 429


def test_per_address_limit_spans_accounts(client: TestClient) -> None:
    statuses = [
        client.post(LOGIN, json={"login": f"spray{i}", "password": "wrong!"}).status_code
        for i in range(limits.LOGIN_PER_IP.hits + 1)
    ]
    assert statuses[:-1] == [401] * limits.LOGIN_PER_IP.hits
    assert statuses[-1] == 429


def test_limits_hold_across_two_api_processes(
    client: TestClient, app, engine, app_settings
) -> None:  # type: ignore[no-untyped-def]
    """A second app instance (another process, same database) sees the same counters."""
    other_app = create_app(app_settings, engine=engine, session_factory=app.state.session_factory)
    with TestClient(other_app, client=("198.51.100.7", 40000)) as other:
        for i in range(limits.RESET_PER_ACCOUNT.hits):
            target = client if i % 2 else other
            response = target.post(
                "/api/v1/auth/password-reset/request", json={"email": "x@example.com"}
            )
            assert response.status_code == 202
        blocked = other.post("/api/v1/auth/password-reset/request", json={"email": "x@example.com"})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1


@pytest.mark.parametrize(
    ("path", "body", "limit"),
    [
        (
            "/api/v1/auth/register",
            {"email": "bad", "username": "u", "password": "p"},
            None,
        ),
        ("/api/v1/auth/resend-verification", {"email": "r@example.com"}, limits.RESEND_PER_ACCOUNT),
        (
            "/api/v1/auth/password-reset/request",
            {"email": "r@example.com"},
            limits.RESET_PER_ACCOUNT,
        ),
        ("/api/v1/auth/refresh", {"refresh_token": "x" * 43}, limits.REFRESH_PER_IP),
    ],
)
def test_other_endpoints_are_limited(
    client: TestClient, path: str, body: dict[str, str], limit: ratelimit.Limit | None
) -> None:
    if limit is None:  # registration: the same address tried again and again
        limit = limits.REGISTER_PER_ACCOUNT
        body = {"email": "dup@example.com", "username": "dupname", "password": "long enough!"}
    statuses = [client.post(path, json=body).status_code for _ in range(limit.hits + 1)]
    assert 429 not in statuses[:-1]
    assert statuses[-1] == 429


def test_registration_is_limited_per_client_address(client: TestClient) -> None:
    statuses = [
        client.post(
            "/api/v1/auth/register",
            json={
                "email": f"n{i}@example.com",
                "username": f"n{i}-user",
                "password": "long enough!",
            },
        ).status_code
        for i in range(limits.REGISTER_PER_IP.hits + 1)
    ]
    assert statuses[:-1] == [201] * limits.REGISTER_PER_IP.hits
    assert statuses[-1] == 429


def test_email_and_username_share_one_login_budget(client: TestClient, db: Session) -> None:
    make_user(db, username="uma", email="uma@example.com")
    for i in range(limits.LOGIN_PER_ACCOUNT.hits):
        name = "uma" if i % 2 else "uma@example.com"
        client.post(LOGIN, json={"login": name, "password": "wrong!"})
    assert client.post(LOGIN, json={"login": "uma", "password": PASSWORD}).status_code == 429


def test_ipv6_clients_are_limited_by_their_64(app, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    statuses = []
    for i in range(limits.LOGIN_PER_IP.hits + 1):
        with TestClient(app, client=(f"2001:db8:1:2::{i + 1:x}", 50000)) as rotating:
            response = rotating.post(LOGIN, json={"login": f"v6-{i}", "password": "wrong!"})
            statuses.append(response.status_code)
    assert statuses[-1] == 429


# -- what a refused attempt costs ----------------------------------------------------------


def _counters(app) -> list[tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """This test's counters, with the row versions: an update or even a row lock changes
    ``xmin`` or ``xmax``."""
    limiter: ratelimit.RateLimiter = app.state.rate_limiter
    with limiter.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT key, window_start::text, hits::text, xmin::text, xmax::text"
                " FROM rate_limits WHERE key LIKE :prefix ORDER BY key"
            ),
            {"prefix": f"{limiter.namespace}%"},
        ).all()
    return [tuple(row) for row in rows]


def _exhaust_address(client: TestClient) -> None:
    for i in range(limits.LOGIN_PER_IP.hits):
        assert client.post(LOGIN, json={"login": f"n{i}", "password": "x"}).status_code == 401


def test_a_refused_login_writes_no_counter(
    client: TestClient,
    app,
    engine,
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    _exhaust_address(client)
    # The first refusal is the database's; it writes nothing either.
    before = _counters(app)
    assert client.post(LOGIN, json={"login": "late", "password": "x"}).status_code == 429
    assert _counters(app) == before
    # Refused again, now from this process's memory.
    assert client.post(LOGIN, json={"login": "later", "password": "x"}).status_code == 429
    assert _counters(app) == before
    # Another process (no memory of the refusal) asks the database, which writes nothing.
    other_app = create_app(app_settings, engine=engine, session_factory=app.state.session_factory)
    with TestClient(other_app, client=("198.51.100.7", 40000)) as other:
        refused = other.post(LOGIN, json={"login": "elsewhere", "password": "x"})
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= limits.LOGIN_PER_IP.period
    assert _counters(app) == before
    # A counter still under its limit does count (the snapshot above can see a change).
    assert client.post("/api/v1/auth/password-reset/request", json={"email": "a@b.example"})
    assert _counters(app) != before


def test_processes_remembering_refusals_let_through_no_more_than_the_limit(
    app,
    engine,
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    """Each process remembers its own refusals; taking turns, three of them still let
    through exactly the limit (the database counts every attempt it accepts)."""
    apps = [app] + [
        create_app(app_settings, engine=engine, session_factory=app.state.session_factory)
        for _ in range(2)
    ]
    limit = limits.RESET_PER_ACCOUNT
    with ExitStack() as stack:
        clients = [
            stack.enter_context(TestClient(a, client=(f"198.51.100.{20 + n}", 40000)))
            for n, a in enumerate(apps)
        ]
        statuses = [
            clients[i % 3]
            .post("/api/v1/auth/password-reset/request", json={"email": "race@example.com"})
            .status_code
            for i in range(4 * limit.hits)
        ]
    assert statuses[: limit.hits] == [202] * limit.hits
    assert set(statuses[limit.hits :]) == {429}


def test_a_refused_login_computes_no_hash(client: TestClient, db: Session) -> None:
    make_user(db, username="hal")
    pool = passwords.pool()
    calls = pool.stats().calls
    assert client.post(LOGIN, json={"login": "hal", "password": PASSWORD}).status_code == 200
    assert pool.stats().calls == calls + 1  # an accepted attempt hashes once
    for _ in range(limits.LOGIN_PER_ACCOUNT.hits - 1):
        assert client.post(LOGIN, json={"login": "hal", "password": "wrong!"}).status_code == 401
    calls = pool.stats().calls
    # Over the account's limit, even the right password is refused before any hashing.
    assert client.post(LOGIN, json={"login": "hal", "password": PASSWORD}).status_code == 429
    assert client.post(LOGIN, json={"login": "hal", "password": PASSWORD}).status_code == 429
    assert pool.stats().calls == calls


def test_a_refused_address_computes_no_hash(client: TestClient, db: Session) -> None:
    make_user(db, username="ida")
    _exhaust_address(client)
    calls = passwords.pool().stats().calls
    for _ in range(3):
        assert client.post(LOGIN, json={"login": "ida", "password": PASSWORD}).status_code == 429
    assert passwords.pool().stats().calls == calls


def test_a_remembered_address_is_refused_before_anything_else(
    client: TestClient,
    app,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []

    async def pause() -> None:
        pauses.append(accounts_deps.REFUSAL_DELAY)

    monkeypatch.setattr(accounts_deps, "_pause", pause)
    _exhaust_address(client)
    assert client.post(LOGIN, json={"login": "x", "password": "y"}).status_code == 429
    assert pauses == []  # the database refused this one, in a thread: no waiting there
    # Known refused: not even the body is looked at, and nothing is counted.
    before = _counters(app)
    refused = client.post(LOGIN, content=b"not json", headers={"content-type": "text/plain"})
    assert refused.status_code == 429
    assert refused.json()["type"] == "/problems/rate-limited"
    assert _counters(app) == before
    assert pauses == [accounts_deps.REFUSAL_DELAY]  # a client that keeps trying is slowed down
    # Another address is not affected.
    with TestClient(app, client=("198.51.100.8", 40000)) as other:
        assert other.post(LOGIN, json={"login": "x", "password": "y"}).status_code == 401
