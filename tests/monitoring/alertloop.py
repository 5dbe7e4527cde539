"""A real Prometheus and a real Alertmanager around a running Slipway, for the alert loop's test and bench/mttr.py.

Prometheus finds the model servers through Slipway's service discovery (/metrics/targets), scrapes them
and evaluates deploy/prometheus/alerts.yml; Alertmanager posts what fires to Slipway's receiver. The
timings are the shipped ones (deploy/prometheus/*.yml) or short test ones, written into copies: the
shipped files are never changed.
"""

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import requests
import yaml
from django.conf import settings
from onnx import TensorProto, helper, numpy_helper

from releases.management.demo_model import digits_model

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SHIPPED_PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SHIPPED_ALERTMANAGER = ROOT / "deploy" / "prometheus" / "alertmanager.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@dataclass(frozen=True)
class Timings:
    """How often Prometheus looks and how long each stage of the loop waits (seconds)."""

    scrape: float
    evaluation: float
    discovery: float
    group_wait: float
    group_interval: float
    rate_window: float | None = None  # None: the rules' own windows
    hold: float | None = None  # the rules' `for:`; None: their own

    @classmethod
    def shipped(cls) -> "Timings":
        prom = yaml.safe_load(SHIPPED_PROMETHEUS.read_text())
        route = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())["route"]
        paging = route | next((r for r in route.get("routes", []) if 'severity="page"' in r.get("matchers", [])), {})
        sd = next(job["http_sd_configs"][0] for job in prom["scrape_configs"] if "http_sd_configs" in job)
        return cls(scrape=seconds(prom["global"]["scrape_interval"]),
                   evaluation=seconds(prom["global"]["evaluation_interval"]),
                   discovery=seconds(sd.get("refresh_interval", "60s")),
                   group_wait=seconds(paging["group_wait"]), group_interval=seconds(paging["group_interval"]))

    @classmethod
    def test(cls) -> "Timings":
        return cls(scrape=0.5, evaluation=0.5, discovery=1, group_wait=0.5, group_interval=1, rate_window=5, hold=1)


def seconds(duration: str) -> float:
    """A Prometheus duration ("15s", "5m", "1h30m") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * units[u] for n, u in parts)


def duration(value: float) -> str:
    return f"{round(value * 1000)}ms"


def rules_with(timings: Timings) -> str:
    """deploy/prometheus/alerts.yml with the test's rate windows and `for:` (the shipped file unchanged)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if timings.hold is not None:
                rule["for"] = duration(timings.hold)
            if timings.rate_window is not None:
                rule["expr"] = re.sub(r"\[\d+[smhd]\]", f"[{duration(timings.rate_window)}]", rule["expr"])
    return yaml.safe_dump(rules, sort_keys=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A process on a port of its own, its log kept beside its data, stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.url = f"http://127.0.0.1:{port}"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + ready_path, timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} was not ready within 30 s: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_alertmanager(work: Path, slipway_url: str, token: str, timings: Timings) -> Daemon:
    if ALERTMANAGER is None:
        raise RuntimeError("Alertmanager is not installed: apt-get install -y prometheus-alertmanager")
    config = yaml.safe_load(SHIPPED_ALERTMANAGER.read_text())
    for route in [config["route"], *config["route"].get("routes", [])]:
        route |= {"group_wait": duration(timings.group_wait), "group_interval": duration(timings.group_interval)}
    hook = config["receivers"][0]["webhook_configs"][0]
    hook["url"] = f"{slipway_url}/api/v1/alerts/"
    hook["http_config"]["authorization"]["credentials"] = token
    (work / "alertmanager").mkdir(parents=True, exist_ok=True)
    path = work / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    return Daemon("Alertmanager", [
        ALERTMANAGER, f"--config.file={path}", f"--storage.path={work / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",  # one instance, no gossip port
    ], port, "/-/ready", work / "alertmanager.log")


def start_prometheus(work: Path, slipway_url: str, alertmanager: Daemon, timings: Timings) -> Daemon:
    if PROMETHEUS is None:
        raise RuntimeError("Prometheus is not installed: apt-get install -y prometheus")
    config = yaml.safe_load(SHIPPED_PROMETHEUS.read_text())
    config["global"] = {"scrape_interval": duration(timings.scrape),
                        "evaluation_interval": duration(timings.evaluation)}
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{alertmanager.port}"]
    host = slipway_url.removeprefix("http://")
    token_file = work / "slipway_metrics_token"  # Slipway's /metrics and /metrics/targets ask for it
    token_file.write_text(settings.SLIPWAY_METRICS_TOKEN)
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            static["targets"] = [host]
        for sd in job.get("http_sd_configs", []):
            sd |= {"url": f"{slipway_url}/metrics/targets", "refresh_interval": duration(timings.discovery)}
        for block in [job, *job.get("http_sd_configs", [])]:
            if "authorization" in block:
                block["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
    (work / "alerts.yml").write_text(rules_with(timings))
    token = work / "slipway_metrics_token"  # what the shipped config reads from /etc/prometheus/
    token.write_text(metrics_token())
    token.chmod(0o600)
    for job in config["scrape_configs"]:
        for block in [job, *job.get("http_sd_configs", [])]:
            if "credentials_file" in block.get("authorization", {}):
                block["authorization"]["credentials_file"] = str(token)
    path = work / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    return Daemon("Prometheus", [
        PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={work / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ], port, "/-/ready", work / "prometheus.log")


def metrics_token() -> str:
    """Slipway's metrics token, which /metrics and /metrics/targets ask for."""
    from django.conf import settings

    return settings.SLIPWAY_METRICS_TOKEN


def firing(prometheus: Daemon, alertname: str) -> list[dict]:
    alerts = requests.get(prometheus.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname and a["state"] == "firing"]


def active(prometheus: Daemon, alertname: str) -> list[dict]:
    """Pending or firing."""
    alerts = requests.get(prometheus.url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == alertname]


def scraped_errors(prometheus: Daemon, release_id: int) -> float:
    """The model server's error counter as Prometheus last scraped it (0 before any error)."""
    return scraped(prometheus, f'sum(slipway_model_errors_total{{release="{release_id}"}})')


def scraped_requests(prometheus: Daemon, release_id: int) -> float:
    return scraped(prometheus, f'sum(slipway_model_requests_total{{release="{release_id}"}})')


def scraped(prometheus: Daemon, query: str) -> float:
    result = requests.get(prometheus.url + "/api/v1/query", params={"query": query}, timeout=5).json()
    values = result["data"]["result"]
    return float(values[0]["value"][1]) if values else 0.0


def faulty_digits_onnx() -> bytes:
    """The demo's digits model with a fault: it answers like the demo model for pixels in [0, 1] (the
    evaluation data's range) and fails inside ONNX Runtime (a reshape to a size that does not fit) when a
    pixel is 2 or more. What a bad release does in production: it passes its smoke test, then fails on
    real traffic (HTTP 422 `inference_failed`, counted in slipway_model_errors_total)."""
    model = onnx.load_from_string(digits_model().onnx_bytes)
    graph = model.graph
    graph.initializer.extend([numpy_helper.from_array(np.zeros(2, np.float32), "fault_table"),
                              numpy_helper.from_array(np.array(2, np.int64), "fault_two"),
                              numpy_helper.from_array(np.array([0], np.int64), "fault_axis")])
    logits0 = next(n for n in graph.node if n.op_type == "MatMul").output[0]
    add = next(n for n in graph.node if n.op_type == "Add")
    fault = [
        helper.make_node("ReduceMax", ["pixels"], ["fault_max"], keepdims=0),  # the largest pixel
        helper.make_node("Cast", ["fault_max"], ["fault_int"], to=TensorProto.INT64),
        helper.make_node("Div", ["fault_int", "fault_two"], ["fault_half"]),  # 0 for pixels below 2
        helper.make_node("Add", ["fault_half", "fault_two"], ["fault_size"]),
        helper.make_node("Unsqueeze", ["fault_size", "fault_axis"], ["fault_shape"]),
        helper.make_node("Reshape", ["fault_table", "fault_shape"], ["fault_vector"]),  # fails unless size 2
        helper.make_node("ReduceSum", ["fault_vector"], ["fault_zero"], keepdims=0),
        helper.make_node("Add", [logits0, "fault_zero"], ["fault_logits"]),
    ]
    at = list(graph.node).index(add)
    for offset, node in enumerate(fault):
        graph.node.insert(at + offset, node)
    add.input[0] = "fault_logits"
    onnx.checker.check_model(model)
    return model.SerializeToString()
