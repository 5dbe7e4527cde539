"""Two models in production through a real HAProxy, each with a real model server per release (a plugin
every test directory gets: page, API and drill tests share it)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from releases import routing
from releases.models import Environment
from serving import oip
from serving.integrity import file_sha256
from shipping import proxy
from shipping.local_target import LocalTarget
from shipping.ports import ephemeral_port
from shipping.targets import InstanceSpec
from tests.pages import data as d
from tests.serving.onnx_models import linear_model
from tests.shipping.load import LINEAR_BODY


@pytest.fixture
def production_behind_haproxy(users, tmp_path) -> Iterator[dict]:
    """Two models in production through a real HAProxy, each with a real model server per release:
    digits 1.1.0 active and 1.0.0 warm, wine 2.0.0 active and 1.9.0 warm."""
    for env in Environment.objects.all():  # ports of our own, so that parallel runs never collide
        env.proxy_port = ephemeral_port()
        env.save()
    config = routing.proxy_config()
    model_path = linear_model(tmp_path / "linear.onnx")
    target = LocalTarget(log_dir=tmp_path / "logs")
    releases, instances = {}, {}
    for model_name, labels in (("digits", ("1.0.0", "1.1.0")), ("wine", ("1.9.0", "2.0.0"))):
        model = d.make_model(model_name)
        for label in labels:
            releases[label] = d.make_release(d.make_version(model, label, users["ci"]), "released", d.STAGES_DONE)
    specs = {label: InstanceSpec(release_id=str(r.pk), environment="production", port=ephemeral_port(),
                                 model_name=r.version.model.name, version=label, model_path=model_path,
                                 sha256=file_sha256(model_path)) for label, r in releases.items()}
    with ThreadPoolExecutor() as pool:
        instances = dict(zip(specs, pool.map(lambda spec: target.launch(spec, timeout=60), specs.values()),
                             strict=True))
    try:
        proxy.ensure_running(config)
        now = timezone.now()
        for warm, active in (("1.0.0", "1.1.0"), ("1.9.0", "2.0.0")):
            model = releases[active].version.model.name
            proxy.set_traffic(config, "production", model, {instances[active]: 100, instances[warm]: 0})
            d.deploy("production", releases[warm], "warm", 0, asdict(instances[warm]))
            d.deploy("production", releases[active], "active", 100, asdict(instances[active]))
            d.traffic("production", now - timedelta(minutes=30), {releases[warm]: 100}, "deploy", users["ci"])
            d.traffic("production", now - timedelta(minutes=10), {releases[active]: 100}, "promote", users["ci"])
        d.samples("production", releases["1.0.0"], now - timedelta(minutes=30), 120, rps=20.0, p95=12.0)
        d.samples("production", releases["1.1.0"], now - timedelta(minutes=10), 60, rps=30.0, p95=9.0,
                  error_rate=0.02)
        yield {"releases": releases, "config": config}
    finally:
        proxy.stop(config)
        with ThreadPoolExecutor() as pool:
            list(pool.map(lambda instance: target.stop(instance, timeout=10), instances.values()))


def served_by(config, model: str) -> str:
    answer = requests.post(config.endpoint("production") + oip.infer_path(model), json=LINEAR_BODY, timeout=5)
    assert answer.status_code == 200, answer.text
    return answer.headers["X-Release-Id"]
