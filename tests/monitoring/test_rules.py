"""deploy/prometheus/alerts.yml: valid for promtool, and the alerts fire with the labels the receiver needs."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="apt-get install prometheus (for promtool)")
WHO = 'model="digits",environment="production",release="7"'


def test_promtool_accepts_the_rules():
    check = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 6 rules found" in check.stdout


def test_the_alerts_fire_on_accuracy_drop_abnormal_outputs_and_drift(tmp_path):
    labels = {"model": "digits", "environment": "production", "release": "7", "severity": "page"}
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
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
        }],
    }
    path = tmp_path / "alerts_test.yml"
    path.write_text(json.dumps(tests))  # JSON is YAML
    check = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
