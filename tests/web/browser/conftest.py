"""Browser tests of the web panel: Debian's Chromium driven by Playwright against the real app.

- ``live_server``: the app under uvicorn in a thread, with its own database cloned from the
  migrated template, the job worker in-process, the fake driver allowed, a local mailbox.
- ``context`` / ``page`` (pytest-playwright's, overridden here): a fresh context per test on
  the live server (``base_url`` set, an X-Forwarded-For address of its own), watched by a
  :class:`PageGuard` that fails the test at teardown on a request to another origin, a CSP
  violation, or an open page that scrolls sideways at 390 px. ``new_panel_context`` makes
  more such contexts (a second tab, a second user, JavaScript off).
- ``fake_offer`` / ``libvirt_live_node``: somewhere to order (docs/testing-browser.md).

Every test here carries the ``browser`` marker (``pytest -m browser``). The live server,
Playwright and the browser are package-scoped: one each for all browser tests, stopped after
the last one (see the comment above ``playwright``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    BrowserType,
    Playwright,
    expect,
    sync_playwright,
)

from tests.compute.conftest import LIBVIRT_URI, drop_pool
from tests.compute.conftest import tiny as tiny  # the session's tiny guest, built once
from tests.conftest import TEMPLATE_DB
from tests.factories.compute import boot_tiny_image
from tests.web.browser.guard import PageGuard
from tests.web.browser.helpers import (
    Offer,
    add_fake_node,
    add_node,
    add_plan,
    client_address,
    node_named,
    offer_on,
    only_node,
)
from tests.web.browser.server import LiveServer, run_live_server
from vmcloud.compute import nodes, pools
from vmcloud.compute.tiny_image import TinyImage
from vmcloud.db.embedded import EmbeddedPostgres

CHROMIUM = "/usr/bin/chromium"
EXPECT_TIMEOUT_MS = 10_000  # expect(...) assertions
ACTION_TIMEOUT_MS = 10_000  # click, fill, … (they wait for the element to be actionable)
NAVIGATION_TIMEOUT_MS = 15_000
HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects, and before the slow-first sort
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Slow as a whole (a live server, Chromium, a real VM): started early, on one xdist
    # worker (tests/conftest.py ONE_WORKER_MODULES).
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)


# -- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # `playwright install` cannot download here: the system's Chromium instead. Headless
    # unless --headed; as root Chromium's sandbox cannot start (Playwright passes
    # --no-sandbox already unless chromium_sandbox=True; said here so it stays so).
    args = list(browser_type_launch_args.get("args", []))
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return {"headless": True, **browser_type_launch_args, "executable_path": CHROMIUM, "args": args}


# Playwright's sync API marks the test thread's asyncio loop as running for as long as it is
# started. pytest-playwright keeps it for the whole session, so every later test in the process
# would find asyncio.run() refused ("cannot be called from a running event loop"). Here
# Playwright and its one browser live as long as this package instead: these overrides of the
# plugin's session fixtures stop both after the last browser test.


@pytest.fixture(scope="package")
def playwright(_pw_api_request_contexts: Any) -> Iterator[Playwright]:
    started = sync_playwright().start()
    if _pw_api_request_contexts:  # --tracing
        _pw_api_request_contexts.instrument(started)
    yield started
    started.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    chosen: BrowserType = getattr(playwright, browser_name)
    return chosen


@pytest.fixture(scope="package")
def launch_browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Callable[..., Browser]:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="package")
def browser(launch_browser: Callable[..., Browser]) -> Iterator[Browser]:
    launched = launch_browser()
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def browser_context_args(
    pytestconfig: pytest.Config,
    playwright: Playwright,
    device: str | None,
    _pw_artifacts_folder: Any,
) -> dict[str, Any]:
    """The plugin's (--device, --video), without its ``base_url``: each context gets the live
    server's."""
    args: dict[str, Any] = {}
    if device:
        args.update(playwright.devices[device])
    if pytestconfig.getoption("--video") in ("on", "retain-on-failure"):
        args["record_video_dir"] = _pw_artifacts_folder.name
    return args


@pytest.fixture(scope="session", autouse=True)
def _expect_timeout() -> None:
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)


# -- the server ------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def live_server(pg: EmbeddedPostgres, template_url: str) -> Iterator[LiveServer]:
    """One live server for the browser tests (package scope: it stops, worker and all, once
    the last browser test is done, before other tests reconfigure the process's job runtime)."""
    name = f"b_{uuid.uuid4().hex[:12]}"
    pg.create_database(name, template=TEMPLATE_DB)
    data_dir = Path(tempfile.mkdtemp(prefix="vmc-live-", dir="/tmp"))
    try:
        with run_live_server(database_url=pg.url(name), data_dir=data_dir) as live:
            yield live
    finally:
        pg.drop_database(name)
        shutil.rmtree(data_dir, ignore_errors=True)


class PanelContexts:
    """Makes browser contexts on the live server, each guarded; checks them all at the end."""

    def __init__(self, new_context: Any, live: LiveServer) -> None:
        self._new_context = new_context
        self._live = live
        self.guards: dict[int, PageGuard] = {}

    def __call__(self, *, address: str | None = None, **kwargs: Any) -> BrowserContext:
        """``address``: the client address the server sees (default: a new one); other
        arguments go to ``browser.new_context`` (``java_script_enabled=False``, …)."""
        headers = {"X-Forwarded-For": address or client_address()}
        headers.update(kwargs.pop("extra_http_headers", {}))
        context: BrowserContext = self._new_context(
            base_url=self._live.url, extra_http_headers=headers, **kwargs
        )
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        guard = PageGuard(self._live.url)
        guard.attach(context)
        self.guards[id(context)] = guard
        return context

    def guard_of(self, context: BrowserContext) -> PageGuard:
        return self.guards[id(context)]

    def check(self) -> None:
        found = [problem for guard in self.guards.values() for problem in guard.problems()]
        if found:
            raise AssertionError("the page guard found:\n  " + "\n  ".join(found))


@pytest.fixture
def new_panel_context(new_context: Any, live_server: LiveServer) -> Iterator[PanelContexts]:
    contexts = PanelContexts(new_context, live_server)
    yield contexts
    contexts.check()


@pytest.fixture
def context(new_panel_context: PanelContexts) -> BrowserContext:
    """pytest-playwright's ``context`` (and so ``page``), on the live server and guarded."""
    return new_panel_context()


@pytest.fixture
def page_guard(new_panel_context: PanelContexts, context: BrowserContext) -> PageGuard:
    """The guard of ``context``: e.g. ``page_guard.check_width = False`` for a page that may
    scroll sideways on purpose."""
    return new_panel_context.guard_of(context)


# -- somewhere to order ----------------------------------------------------------------------


@pytest.fixture(scope="package")
def fake_offer(live_server: LiveServer) -> Offer:
    """A node on the in-memory driver with room for the whole run, and a plan for it."""
    return offer_on(add_fake_node(live_server), add_plan(live_server))


@pytest.fixture
def libvirt_live_node(live_server: LiveServer, tiny: TinyImage) -> Iterator[Offer]:
    """The machine's real libvirt (qemu:///system) as a node of the live server, booting the
    tiny image, as tests/compute/test_libvirt_e2e.py registers it; while the test runs it is
    the only enabled node, so orders land on it. Its VMs go with it at the end."""
    storage = Path(tempfile.mkdtemp(prefix="vmc-browser-", dir="/tmp"))
    storage.chmod(0o755)  # QEMU runs as its own user
    node = add_node(
        live_server,
        name=f"libvirt-{uuid.uuid4().hex[:6]}",
        driver="libvirt",
        uri=LIBVIRT_URI,
        storage_dir=str(storage),
        vcpus=8,
        memory_mb=16384,
        disk_gb=500,
    )
    with live_server.transaction() as db:
        boot_tiny_image(db, tiny)
    plan = add_plan(live_server)  # 1 vCPU, 192 MB, 1 GB: what the tiny guest needs
    try:
        with only_node(live_server, node.id):
            yield offer_on(node, plan)
    finally:
        node = node_named(live_server, node.name)
        driver = nodes.driver_for(node)
        for leftover in driver.list():
            driver.destroy(leftover)
        drop_pool(pools.pool_name(node.storage_dir))
        with live_server.transaction() as db:
            db.merge(node).status = "disabled"
        shutil.rmtree(storage, ignore_errors=True)
