"""Browser fixtures: Debian's Chromium driven by Playwright, screenshots at laptop and phone widths."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def browser() -> Iterator:
    """Chromium for one test. Not shared between tests: while Playwright runs, Django sees another
    async context with its own database connection, one that lacks the serialized migration data
    that serialized_rollback restores at the next test's start."""
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
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
def open_as(browser, live_server) -> Iterator[Callable]:
    """open_as(username) → a logged-in page (laptop width) of a fresh browser context. The test
    fails if a page logs an error, a policy violation (CSP) included."""
    contexts, errors = [], []

    def login(username: str):
        context = browser.new_context(viewport=dict(zip(("width", "height"), WIDTHS["laptop"], strict=True)),
                                      base_url=live_server.url)
        contexts.append(context)
        page = context.new_page()
        page.on("console", lambda message: errors.append(f"{page.url}: {message.text} ({message.location['url']})")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
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
    assert errors == []


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
