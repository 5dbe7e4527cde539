"""Security by default: login rate limit, CSP and friends on every page, a clean `check --deploy`."""

import os
import subprocess
import sys
from pathlib import Path

from django.contrib.auth.models import User
from django.test import Client

from releases.models import Approval
from tests.pages import scenes

ROOT = Path(__file__).resolve().parents[1]


def test_logins_are_rate_limited_per_user_and_address(db):
    User.objects.create_user("mallory-target", password="right-password-1")
    client = Client(REMOTE_ADDR="10.9.8.7")
    for _ in range(4):
        response = client.post("/login/", {"username": "mallory-target", "password": "wrong"})
        assert response.status_code == 200 and b"did not match" in response.content
    assert client.post("/login/", {"username": "mallory-target", "password": "wrong"}).status_code == 429
    locked = client.post("/login/", {"username": "mallory-target", "password": "right-password-1"})
    assert locked.status_code == 429
    assert b"Too many failed logins" in locked.content
    other_address = Client(REMOTE_ADDR="10.1.1.1")
    assert other_address.post("/login/", {"username": "mallory-target",
                                          "password": "right-password-1"}).status_code == 302


def test_pages_carry_a_strict_content_security_policy_and_other_headers(db):
    response = Client().get("/login/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("style-src-attr")[0]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_mutations_need_csrf_on_pages(users):
    release = scenes.build(users).at_gate  # a real release that alice may approve
    client = Client(enforce_csrf_checks=True)
    client.force_login(users["alice"])
    url = f"/releases/{release.pk}/decide/"
    assert client.post(url, {"decision": "approve"}).status_code == 403
    assert not Approval.objects.filter(release=release).exists()
    # The same form with the page's token is taken: the refusal above was the CSRF check, nothing else.
    token = client.get(f"/releases/{release.pk}/").cookies["csrftoken"].value
    assert client.post(url, {"decision": "approve", "csrfmiddlewaretoken": token}).status_code == 302
    assert list(Approval.objects.filter(release=release).values_list("user__username", "decision")) == [
        ("alice", "approve")]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    # Only what a production process would have (the browser tests allow async-unsafe calls in this one).
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"} | {
        "DJANGO_SETTINGS_MODULE": "slipway.settings", "SLIPWAY_HTTPS": "true", "SLIPWAY_DATA_DIR": str(tmp_path),
        "SLIPWAY_SECRET_KEY": "k" * 60 + "-production-like-secret", "SLIPWAY_ALLOWED_HOSTS": "slipway.example.com",
        "DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ.get("REDIS_URL", ""),
    }
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
