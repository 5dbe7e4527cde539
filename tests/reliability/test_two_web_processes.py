"""Two web processes (gunicorn) behind one address share nothing but PostgreSQL, Redis and the store:
each has its own data folder, and a session, an upload and a login lock made on one hold on the other.
The store is moto's S3 server over HTTP (tests/s3server.py)."""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from releases.models import ModelVersion
from releases.storage.base import object_key
from shipping.ports import ephemeral_port
from tests.conftest import build_form
from tests.s3server import bucket_keys, s3_environment
from tests.workerproc import worker_database_url

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
SECRET = "two-web-processes-test-secret-key-0123456789abcdef"


def start_web(port: int, data_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    full = os.environ | {"DATABASE_URL": worker_database_url(), "REDIS_URL": settings.REDIS_URL,
                         "DJANGO_SETTINGS_MODULE": "tests.settings", "SLIPWAY_SECRET_KEY": SECRET,
                         "SLIPWAY_DATA_DIR": str(data_dir), "SLIPWAY_LOGIN_FAILURE_LIMIT": "3"} | env
    full.pop("SLIPWAY_ARTIFACT_DIR", None)
    with open(data_dir / "web.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "gunicorn", "slipway.wsgi", "-b", f"127.0.0.1:{port}",
                                 "-w", "1", "--log-level", "warning"], env=full, stdout=log, stderr=subprocess.STDOUT)


def wait_up(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/login/", timeout=10).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or still loading under load
            time.sleep(0.2)
    raise AssertionError(f"{url} did not come up within {timeout} s")


def login(session: requests.Session, url: str, username: str, password: str) -> requests.Response:
    form = session.get(url + "/login/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
    return session.post(url + "/login/", data={"username": username, "password": password,
                                               "csrfmiddlewaretoken": token}, timeout=10, allow_redirects=False)


@pytest.fixture
def two_webs(s3_endpoint, s3_bucket):
    folders = [Path(tempfile.mkdtemp(prefix="slipway-web-")) for _ in range(2)]
    ports = [ephemeral_port(), ephemeral_port()]
    env = s3_environment(s3_endpoint, s3_bucket)
    procs = [start_web(port, folder, env) for port, folder in zip(ports, folders, strict=True)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url in urls:
            wait_up(url)
        yield urls, folders
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)


def test_a_session_an_upload_and_a_login_lock_hold_across_web_processes(users, two_webs, s3_endpoint, s3_bucket):
    (a, b), folders = two_webs
    session = requests.Session()
    assert login(session, a, "alice", "pw-alice").status_code == 302
    assert session.get(b + "/workers/", timeout=10, allow_redirects=False).status_code == 200
    # Sessions are read from the shared cache: a logout on one process ends the session on the other too,
    # also for a copy of its cookie.
    other = requests.Session()
    assert login(other, a, "alice", "pw-alice").status_code == 302
    copied = {"sessionid": other.cookies["sessionid"]}
    assert requests.get(b + "/workers/", cookies=copied, timeout=10, allow_redirects=False).status_code == 200
    page = other.get(a + "/workers/", timeout=10).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert other.post(a + "/logout/", data={"csrfmiddlewaretoken": token}, timeout=10,
                      allow_redirects=False).status_code == 302
    assert requests.get(b + "/workers/", cookies=copied, timeout=10, allow_redirects=False).status_code == 302

    from releases.models import ApiToken

    _, raw = ApiToken.issue(users["ci"], "ci", ["builds:write", "releases:read"])
    form = build_form()
    files = {name: (form.pop(name).name, upload.read()) for name, upload in
             (("artifact", form["artifact"]), ("eval_data", form["eval_data"]))}
    headers = {"Authorization": f"Bearer {raw}", "Idempotency-Key": "pipeline-1"}
    first = requests.post(a + "/api/v1/builds/", data=form, files=files, headers=headers, timeout=60)
    assert first.status_code == 201, first.text
    again = requests.post(b + "/api/v1/builds/", data=form, files=files, headers=headers, timeout=60)
    assert (again.status_code, again.json()["version"]["id"]) == (200, first.json()["version"]["id"])
    version = ModelVersion.objects.select_related("artifact", "eval_data").get()
    assert bucket_keys(s3_endpoint, s3_bucket) == sorted(
        f"slipway/{object_key(sha)}" for sha in (version.artifact.sha256, version.eval_data.sha256))
    assert [p for folder in folders for p in (folder / "artifacts").rglob("*") if p.is_file()] == []

    # Failed logins count across processes: two on one and the third on the other lock bob out on both.
    for _ in range(2):
        assert login(requests.Session(), a, "bob", "wrong").status_code == 200
    assert login(requests.Session(), b, "bob", "wrong").status_code == 429
    locked = login(requests.Session(), a, "bob", "pw-bob")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.text
