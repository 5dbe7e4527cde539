"""Finding 5: pages need a role (viewer at least), as the API does; a signed-in user in no group sees nothing.

Every page URL is found by walking the URL configuration, so a page added later is covered too.
"""

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import make_user

NOT_PAGES = ("api/", "admin/", "login/", "logout/", "metrics", "static/")


def page_paths(patterns: list | None = None, prefix: str = "") -> list[str]:
    paths = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(NOT_PAGES):
            continue
        if isinstance(entry, URLResolver):
            paths += page_paths(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            paths.append("/" + re.sub(r"<str:\w+>", "x", re.sub(r"<int:\w+>", "1", route)))
    return paths


PAGES = page_paths()


def test_the_walk_finds_the_pages():
    assert {"/", "/models/x/", "/releases/1/decide/", "/environments/x/models/x/rollback/", "/webhooks/", "/workers/",
            "/monitoring/releases/1/", "/health/"} <= set(PAGES)


@pytest.mark.parametrize("path", PAGES)
def test_a_user_with_no_role_is_refused_every_page(db, path):
    client = Client()
    client.force_login(make_user("nobody"))
    for method in (client.get, client.post):
        response = method(path)
        assert response.status_code == 403, (method, path)
        assert b"nobody has no role that may view Slipway" in response.content


@pytest.mark.parametrize("path", ["/", "/models/", "/environments/", "/health/", "/webhooks/", "/workers/"])
def test_a_viewer_sees_the_pages(db, path):
    client = Client()
    client.force_login(make_user("victor", "viewer"))
    assert client.get(path).status_code == 200
