from tests.pages.conftest import browser, open_as  # noqa: F401 - Chromium fixtures for test_browser.py
