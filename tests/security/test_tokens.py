"""Finding 6: tokens expire by default and can be revoked from a page; the CLI keeps them off the command line
and warns before sending them over plain http to another machine."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient, APIRequestFactory

from releases.api.auth import ApiTokenAuthentication
from releases.models import ApiToken
from releases.roles import groups_of, may
from slipway import cli
from tests.conftest import make_user


def api(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_a_token_expires_after_the_default_lifetime_and_is_then_refused(db, settings):
    settings.SLIPWAY_TOKEN_LIFETIME_DAYS = 30
    token, raw = ApiToken.issue(make_user("ci", "deployer"), "ci", ["releases:read"])
    assert abs(token.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert api(raw).get("/api/v1/models/").status_code == 200
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = api(raw).get("/api/v1/models/")
    assert refused.status_code == 401 and refused.json()["detail"] == "the token is unknown, expired or revoked"


def test_a_tokens_user_comes_with_their_groups_in_one_query_read_afresh_each_call(db, django_assert_num_queries):
    user = make_user("arthur", "deployer", "approver")
    _, raw = ApiToken.issue(user, "ci", ["builds:write"])
    ApiToken.objects.update(last_used_at=timezone.now())  # used a moment ago: not touched again now
    request = APIRequestFactory().get("/api/v1/models/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    with django_assert_num_queries(1):
        found, _ = ApiTokenAuthentication().authenticate(request)
        assert groups_of(found) == {"deployer", "approver"} and may(found, "deploy") and may(found, "approve")
    user.groups.clear()
    with django_assert_num_queries(1):
        found, _ = ApiTokenAuthentication().authenticate(request)
        assert groups_of(found) == set() and not may(found, "deploy")


def createtoken(*args: str) -> ApiToken:
    out, err = io.StringIO(), io.StringIO()
    call_command("createtoken", "ci", "--scope", "alerts", *args, stdout=out, stderr=err)
    token = ApiToken.objects.get(prefix=out.getvalue().strip()[:10])
    assert f"token {token.prefix}… for ci: alerts;" in err.getvalue()
    return token


def test_createtoken_sets_the_expiry_and_the_bindings(db, settings):
    settings.SLIPWAY_TOKEN_LIFETIME_DAYS = 90
    make_user("ci", "on-call")
    default = createtoken()
    assert abs(default.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    week = createtoken("--expires", "7d", "--model", "digits", "--environment", "production")
    assert abs(week.expires_at - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)
    assert (week.bound_models, week.bound_environments) == (["digits"], ["production"])
    assert createtoken("--expires", "2099-01-31").expires_at.date().isoformat() == "2099-01-31"
    assert createtoken("--expires", "never").expires_at is None
    for wrong in ("soon", "2001-01-01"):
        with pytest.raises(CommandError):
            createtoken("--expires", wrong)


def test_a_token_is_revoked_from_its_page(db):
    owner, other = make_user("dora", "deployer"), make_user("otto", "on-call")
    token, raw = ApiToken.issue(owner, "laptop", ["releases:read"])
    others_token, _ = ApiToken.issue(other, "pager", ["alerts"])
    page = Client()
    page.force_login(owner)
    listing = page.get("/tokens/").content.decode()
    assert f"<code>{token.prefix}…</code>" in listing and others_token.prefix not in listing
    assert f"{token.expires_at:%Y-%m-%d %H:%M} UTC" in listing
    assert page.post(f"/tokens/{others_token.pk}/revoke/").status_code == 404
    assert page.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    assert api(raw).get("/api/v1/models/").status_code == 401
    assert ApiToken.objects.get(pk=others_token.pk).revoked is False
    assert "revoked" in page.get("/tokens/").content.decode()


@pytest.mark.parametrize(("days", "said"), [
    (30, "A new token expires after 30 days unless told otherwise."),
    (0, "A new token never expires unless told otherwise (SLIPWAY_TOKEN_LIFETIME_DAYS is 0)."),
])
def test_the_tokens_page_shows_the_default_lifetime(db, settings, days, said):
    settings.SLIPWAY_TOKEN_LIFETIME_DAYS = days
    page = Client()
    page.force_login(make_user("victor", "viewer"))
    assert said in page.get("/tokens/").content.decode()


@pytest.mark.parametrize("given", [["--token", "slw_secret"], ["--token=slw_secret"]])
def test_the_cli_takes_no_token_on_its_command_line(monkeypatch, capsys, given):
    with pytest.raises(SystemExit) as exit_:
        cli.parser().parse_args([*given, "status"])
    assert exit_.value.code == 2
    said = capsys.readouterr().err
    assert "a token is never taken on the command line" in said and "slw_secret" not in said  # nor in CI's log
    monkeypatch.setattr("sys.stdin", io.StringIO("slw_from_stdin\n"))
    assert cli.read_token(from_stdin=True) == "slw_from_stdin"
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_from_env")
    assert cli.read_token(from_stdin=False) == "slw_from_env"


@pytest.mark.parametrize(("url", "warned"), [("http://slipway.example.com", True), ("http://10.0.0.5:8000", True),
                                             ("https://slipway.example.com", False), ("http://127.0.0.1:8000", False),
                                             ("http://localhost:8000", False), ("http://[::1]:8000", False)])
def test_the_cli_warns_before_sending_a_token_over_plain_http(url, warned, capsys):
    cli.Client(url, "slw_x")
    assert ("is plain http" in capsys.readouterr().err) is warned
