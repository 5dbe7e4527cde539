"""Chromium for every browser test (a pytest plugin, loaded by tests/conftest.py): Debian's Chromium
driven by Playwright, logged-in pages, screenshots at laptop and phone widths.

Every page opened through `open_as` is watched: a console error (a CSP violation included) or an
uncaught page error fails the test that caused it, after the page has settled (pending requests,
such as panels htmx loads after the page shows, answered and drawn)."""

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
SETTLE_MS = 5_000  # how long a page may take to finish its pending requests before its errors are read


class PageErrors:
    """What the pages of one test logged as errors, and the pages to let settle before judging."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.pages: list = []

    def watch(self, page) -> None:
        self.pages.append(page)
        page.on("console", lambda message: self.errors.append(
            f"console error on {page.url}: {message.text} ({message.location['url']}:"
            f"{message.location['lineNumber']})") if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(
            f"page error on {page.url}: {error.name}: {error.message}"))

    def settle(self) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for page in self.pages:
            if page.is_closed():
                continue
            # A page still busy after SETTLE_MS (it polls often) is judged on what it logged so far.
            with contextlib.suppress(PlaywrightTimeout):
                page.wait_for_load_state("networkidle", timeout=SETTLE_MS)
            page.evaluate("() => new Promise(done => requestAnimationFrame(() => setTimeout(done, 50)))")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After a browser test's body passed: let its pages settle, then fail it on any error they logged."""
    result = yield
    watched: PageErrors | None = getattr(item, "_page_errors", None)
    if watched is not None:
        watched.settle()
        if watched.errors:
            raise AssertionError("the browser logged errors:\n" + "\n".join(f"  {e}" for e in watched.errors))
    return result


def client_for(user: User):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def browser() -> Iterator:
    """Chromium for one test. Not shared between tests: while Playwright runs, Django sees another
    async context with its own database connection, one that lacks the serialized migration data
    that serialized_rollback restores at the next test's start."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (never `playwright install`)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make around it
    # are still synchronous and single-threaded, which is what this switch allows.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
        connections.close_all()  # the connections opened in Playwright's context, not the test's own


@pytest.fixture
def open_as(request: pytest.FixtureRequest, browser, live_server) -> Iterator[Callable]:
    """open_as(username) → a logged-in page (laptop width) of a fresh browser context. The test fails
    if any of its pages logs an error (see pytest_runtest_call above)."""
    contexts = []
    watched = request.node._page_errors = PageErrors()

    def login(username: str):
        context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS["laptop"], strict=True)),
                                      base_url=live_server.url)
        contexts.append(context)
        page = context.new_page()
        watched.watch(page)
        page.set_default_timeout(10_000)
        page.goto("/login/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill("pw-" + username)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(live_server.url + "/")
        return page

    yield login
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> list[Path]:
    """Save the whole page at laptop and phone widths as test-artifacts/screenshots/<name>-<width>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paths = []
    original = page.viewport_size
    for label, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(150)  # charts redraw on resize
        path = SCREENSHOTS / f"{name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        paths.append(path)
    page.set_viewport_size(original)
    return paths
