import pytest

from releases.models import Deployment, Environment, Release, Service
from tests.conftest import build_form, token_client


@pytest.fixture
def serving(users, settings, tmp_path) -> dict:
    """Two digits releases in production: the first kept warm, the second active (no servers run)."""
    settings.ARTIFACT_DIR = tmp_path
    ci = token_client(users["ci"])
    ids = [ci.post("/api/v1/builds/", build_form(version=str(v)), format="multipart").json()["release"]["id"]
           for v in (1, 2)]
    production = Environment.objects.get(name="production")
    digits = Service.objects.create(environment=production, model=Release.objects.get(pk=ids[0]).version.model)
    warm = Deployment.objects.create(service=digits, release_id=ids[0], role="warm", traffic_percent=0,
                                     endpoint="http://127.0.0.1:9", instance={"port": 9})
    active = Deployment.objects.create(service=digits, release_id=ids[1], role="active",
                                       traffic_percent=100, endpoint="http://127.0.0.1:10", instance={"port": 10})
    return {"ids": ids, "production": production, "service": digits, "warm": warm, "active": active}

