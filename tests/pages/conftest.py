"""The page tests' browser fixtures come from tests/browser.py (a plugin every test directory gets)."""

from tests.browser import client_for, screenshot  # noqa: F401 - kept importable from here for older tests
