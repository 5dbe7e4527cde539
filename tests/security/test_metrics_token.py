"""Finding 4: /metrics and /metrics/targets (model server addresses, names, versions) need a token by default."""

import hmac
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", ["/metrics", "/metrics/targets"])
def test_without_the_token_nothing_is_shown(db, settings, path):
    assert Client().get(path).status_code == 401  # no token configured: one was generated
    settings.SLIPWAY_METRICS_TOKEN = "the-right-token-0123456789"
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Bearer the-right-token"},
                   {"HTTP_AUTHORIZATION": "Bearer the-right-token-0123456789x"}):
        response = Client(**header).get(path)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert Client(HTTP_AUTHORIZATION="Bearer the-right-token-0123456789").get(path).status_code == 200


def test_an_installation_with_no_token_configured_generates_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SLIPWAY_METRICS_TOKEN", "DJANGO_SETTINGS_MODULE")}
    env |= {"SLIPWAY_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'slipway.settings'; django.setup(); "
            "from django.conf import settings; print(settings.SLIPWAY_METRICS_TOKEN)")
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    token_file = tmp_path / "metrics_token"
    assert printed.stdout.strip() == token_file.read_text().strip()
    assert len(token_file.read_text().strip()) >= 40
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("path", ["/metrics", "/metrics/targets"])
def test_the_token_is_compared_in_constant_time(db, settings, monkeypatch, path):
    settings.SLIPWAY_METRICS_TOKEN = "the-right-token-0123456789"
    compared, real = [], hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda given, expected: compared.append((given, expected)) or real(
        given, expected))
    assert Client(HTTP_AUTHORIZATION="Bearer the-right-token-0").get(path).status_code == 401
    assert compared == [(b"Bearer the-right-token-0", b"Bearer the-right-token-0123456789")]
