"""Gauges for /metrics: live quality, abnormal outputs and drift of every release taking traffic,
labelled so that an alert names its model, environment and release (deploy/prometheus/alerts.yml)."""

from collections.abc import Iterator
from datetime import timedelta

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitoring.queries import current_figures
from releases.gates import release_figures
from releases.models import Deployment

WINDOW = timedelta(minutes=15)
LABELS = ["model", "environment", "release"]
GAUGES = {
    "accuracy": ("slipway_live_accuracy", "Share of labelled predictions that were right (last 15 minutes)."),
    "mae": ("slipway_live_mean_absolute_error", "Mean absolute error of labelled predictions (last 15 minutes)."),
    "labels": ("slipway_live_labels", "Labelled predictions in the last 15 minutes."),
    "abnormal_ratio": ("slipway_abnormal_output_ratio",
                       "Rows with NaN, infinite or out-of-range outputs over all rows (last 15 minutes)."),
    "drift_psi": ("slipway_input_drift_psi", "Largest population stability index of an input feature, latest."),
}


class MonitoringCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {key: GaugeMetricFamily(name, text, labels=LABELS) for key, (name, text) in GAUGES.items()}
        evaluation = GaugeMetricFamily("slipway_evaluation_accuracy",
                                       "Accuracy of the serving release on its evaluation data.", labels=LABELS)
        figures = current_figures(WINDOW)
        serving = (Deployment.objects.filter(traffic_percent__gt=0)
                   .select_related("service__environment", "release__version__model").order_by("id"))
        for deployment in serving:
            labels = [deployment.release.version.model.name, deployment.environment.name, str(deployment.release_id)]
            live = figures.get((deployment.service.environment_id, deployment.release_id), {})
            task = deployment.release.version.model.task
            for key, family in families.items():
                skip = (key == "accuracy" and task != "classification") or (key == "mae" and task != "regression")
                if key in live and live[key] is not None and not skip:
                    family.add_metric(labels, live[key])
            measured = release_figures(deployment.release).get("accuracy")
            if measured is not None:
                evaluation.add_metric(labels, measured)
        yield from families.values()
        yield evaluation
