"""deploy/prometheus/alerts.yml: valid for promtool, and the alerts fire with the labels the receiver needs."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
WHO = 'model="digits",environment="production",release="7"'


def promtool_test(tmp_path: Path, interval: str, case: dict) -> None:
    """`promtool test rules` on the shipped rules: one case of input series and expected alerts, sampled and
    evaluated every `interval`."""
    tests = {"rule_files": [str(RULES)], "evaluation_interval": interval, "tests": [{"interval": interval, **case}]}
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    check = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_accepts_the_rules():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout


def test_the_alerts_fire_on_accuracy_drop_abnormal_outputs_and_drift(tmp_path):
    labels = {"model": "digits", "environment": "production", "release": "7", "severity": "page"}
    promtool_test(tmp_path, "1m", {
        "input_series": [
            {"series": f"slipway_evaluation_accuracy{{{WHO}}}", "values": "0.95x30"},
            {"series": f"slipway_live_accuracy{{{WHO}}}", "values": "0.94x10 0.40x20"},
            {"series": f"slipway_live_labels{{{WHO}}}", "values": "120x30"},
            {"series": f"slipway_input_drift_psi{{{WHO}}}", "values": "0.05x10 0.9x20"},
            {"series": f'slipway_model_abnormal_outputs_total{{{WHO},kind="nan"}}', "values": "0+0x10 0+30x20"},
            {"series": f"slipway_model_batch_size_sum{{{WHO}}}", "values": "0+600x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "9m", "alertname": "SlipwayLiveAccuracyDrop", "exp_alerts": []},
            {"eval_time": "25m", "alertname": "SlipwayLiveAccuracyDrop", "exp_alerts": [{
                "exp_labels": labels,
                "exp_annotations": {"summary": "digits release 7: live accuracy is 0.55 below its evaluation "
                                               "in production"}}]},
            {"eval_time": "9m", "alertname": "SlipwayAbnormalOutputs", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "SlipwayAbnormalOutputs", "exp_alerts": [{
                "exp_labels": labels,
                "exp_annotations": {"summary": "digits release 7: 5% of rows are NaN, infinite or outside the "
                                               "evaluation range in production"}}]},
            {"eval_time": "29m", "alertname": "SlipwayInputDrift", "exp_alerts": [{
                "exp_labels": labels | {"severity": "ticket"},
                "exp_annotations": {"summary": "digits release 7: inputs drifted from the evaluation data "
                                               "(PSI 0.90) in production"}}]},
        ],
    })


def test_the_error_rate_alert_fires_on_sustained_failure_only(tmp_path):
    """The shipped timings (5 s scrapes and evaluations): a busy release that keeps failing fires within
    a minute; a ~5 s blip and a quiet release's failures do not."""
    def who(release: str) -> str:
        return f'model="digits",environment="production",release="{release}"'

    fires_for_7 = [{"exp_labels": {"model": "digits", "environment": "production", "release": "7", "severity": "page"},
                    "exp_annotations": {"summary": "digits release 7 fails 100% of requests in production"}}]

    promtool_test(tmp_path, "5s", {
        "input_series": [  # 1 request/s; every request fails from 60 s on
            {"series": f"slipway_model_requests_total{{{who('7')}}}", "values": "0+5x60"},
            {"series": f"slipway_model_errors_total{{{who('7')}}}", "values": "0x12 5+5x47"},
            # 1 request/s; one scrape interval of failures at 60 s, then none
            {"series": f"slipway_model_requests_total{{{who('8')}}}", "values": "0+5x60"},
            {"series": f"slipway_model_errors_total{{{who('8')}}}", "values": "0x12 5x47"},
            # one request every 10 s, every one failing
            {"series": f"slipway_model_requests_total{{{who('9')}}}", "values": "0+0.5x60"},
            {"series": f"slipway_model_errors_total{{{who('9')}}}", "values": "0+0.5x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "85s", "alertname": "SlipwayModelErrorRate", "exp_alerts": []},
            {"eval_time": "110s", "alertname": "SlipwayModelErrorRate", "exp_alerts": fires_for_7},
            {"eval_time": "290s", "alertname": "SlipwayModelErrorRate", "exp_alerts": fires_for_7},
        ],
    })
