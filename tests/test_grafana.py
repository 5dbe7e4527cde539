"""Grafana's provisioning (deploy/grafana/): Grafana cannot run here (no image registry), so its
files are checked instead — every query is valid PromQL by Prometheus' own promtool and asks for
metrics that Slipway's /metrics or the model servers really export, and compose mounts what the
provisioning names."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import ServingMetrics
from tests.releases.test_metrics import prometheus
from tests.test_compose import compose

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "deploy" / "grafana"
# What Grafana puts in place of its variables before Prometheus sees a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "6h", "$environment": ".*", "$model": ".*"}


def dashboard() -> dict:
    return json.loads((GRAFANA / "dashboards" / "slipway.json").read_text())


def queries() -> list[str]:
    board = dashboard()
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    found += [a["expr"] for a in board["annotations"]["list"]]
    found += [v["query"]["query"] for v in board["templating"]["list"]]
    return found


def as_promql(query: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        query = query.replace(variable, value)
    return re.sub(r"^label_values\((\w+), \w+\)$", r"\1", query)  # Grafana's own function, over a metric


@pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
def test_every_query_is_promql(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query{i}", "expr": as_promql(q)}
                                                         for i, q in enumerate(queries())]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    check = subprocess.run(["promtool", "check", "rules", str(tmp_path / "rules.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(queries())} rules found" in check.stdout


@pytest.mark.django_db
def test_every_metric_asked_for_is_exported():
    exported = {f.name for f in text_string_to_metric_families(prometheus().get("/metrics").content.decode())}
    exported |= {f.name for f in text_string_to_metric_families(ServingMetrics("m", "1").render().decode())}
    asked = {re.sub(r"_(bucket|count|sum|total)$", "", name)
             for q in queries() for name in re.findall(r"\bslipway_[a-z0-9_]+", q)}
    assert asked and asked <= exported, sorted(asked - exported)
    assert {"slipway_traffic_changes", "slipway_model_requests", "slipway_change_failure_ratio"} <= asked


def test_panels_are_unique_and_use_the_provisioned_data_source():
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "slipway.yml").read_text())["datasources"]
    uids = {s["uid"] for s in sources}
    used = {p["datasource"]["uid"] for p in board["panels"] if "datasource" in p}
    used |= {a["datasource"]["uid"] for a in board["annotations"]["list"]}
    assert used == uids == {"prometheus"}
    assert {a["name"] for a in board["annotations"]["list"]} == {"Deploys", "Rollbacks"}


def test_compose_mounts_what_the_provisioning_names():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.rsplit(":", 1)[0].split(":") for v in grafana["volumes"] if v.startswith("./"))
    assert mounts == {"./deploy/grafana/provisioning": "/etc/grafana/provisioning",
                      "./deploy/grafana/dashboards": "/etc/grafana/dashboards"}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "slipway.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
