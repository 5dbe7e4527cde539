"""compose.yaml cannot be run here (no registry): its structure is checked instead."""

from pathlib import Path

import yaml

from slipway.celery import QUEUES

ROOT = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_every_service_the_design_names_is_there_with_its_queue():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "beat", "worker-cpu", "worker-gpu",
                             "worker-deploy", "prometheus", "alertmanager", "grafana"}
    queues = {name: s["command"][s["command"].index("-Q") + 1] for name, s in services.items()
              if name.startswith("worker-")}
    assert queues == {"worker-cpu": "cpu", "worker-gpu": "gpu", "worker-deploy": "deploy"}
    assert set(queues.values()) == set(QUEUES)


def test_services_are_health_checked_and_started_in_order():
    services = compose()["services"]
    for name in ("postgres", "redis", "web", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    for name in ("web", "worker-cpu", "worker-gpu", "worker-deploy"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}


def test_data_is_kept_in_volumes_and_the_gpu_worker_asks_for_a_gpu():
    spec = compose()
    assert set(spec["volumes"]) == {"data", "postgres", "redis", "prometheus", "alertmanager", "grafana"}
    assert (ROOT / spec["services"]["prometheus"]["volumes"][0].split(":")[0]).is_file()
    assert "postgres:/var/lib/postgresql/data" in spec["services"]["postgres"]["volumes"]
    gpu = spec["services"]["worker-gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "/var/run/docker.sock:/var/run/docker.sock" in spec["services"]["worker-deploy"]["volumes"]


def test_the_web_runs_the_dockerfiles_user_and_the_settings_come_from_the_environment():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER slipway" in dockerfile
    env = compose()["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://") and env["REDIS_URL"].startswith("redis://")
    assert env["SLIPWAY_SECRET_KEY"] == "${SLIPWAY_SECRET_KEY:?set SLIPWAY_SECRET_KEY}"


def test_prometheus_gets_its_rule_files_and_alertmanager_its_configuration():
    spec = compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    mounted = {v.split(":")[1]: ROOT / v.split(":")[0] for v in spec["prometheus"]["volumes"] if v.startswith("./")}
    for rules in config["rule_files"]:
        assert mounted[f"/etc/prometheus/{rules}"].is_file()
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert f"--web.listen-address={targets[0]}" in spec["alertmanager"]["command"]
    (source, target, _) = spec["alertmanager"]["volumes"][0].split(":")
    assert (ROOT / source).is_file() and target == "/etc/alertmanager/alertmanager.yml"
