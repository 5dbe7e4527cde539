"""Migration 0009 carries one-release-per-environment data over to per-model services: each deployment and
serving sample finds its model's service, and an environment-wide traffic change becomes one change per model
whose split it changed."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("releases", "0010_language_models")]
AFTER = [("releases", "0013_services_constraints")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_environment_records_become_per_model_service_records():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Environment, Release = old.get_model("releases", "Environment"), old.get_model("releases", "Release")
    production = Environment.objects.get(name="production")
    user = old.get_model("auth", "User").objects.create(username="ci")
    artifact = old.get_model("releases", "Artifact").objects.create(sha256="0" * 64, size_bytes=1, kind="original",
                                                                   file_format="onnx")
    releases = {}
    for name in ("digits", "wine"):
        model = old.get_model("releases", "Model").objects.create(name=name, task="classification")
        for label in ("1", "2"):
            version = old.get_model("releases", "ModelVersion").objects.create(
                model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=user)
            releases[f"{name}{label}"] = Release.objects.create(version=version, status="released")
    Deployment = old.get_model("releases", "Deployment")
    Deployment.objects.create(environment=production, release=releases["digits1"], role="warm")
    Deployment.objects.create(environment=production, release=releases["digits2"], role="active", traffic_percent=100)
    Deployment.objects.create(environment=production, release=releases["wine1"], role="stopped")
    t0, change = timezone.now() - timedelta(hours=1), old.get_model("releases", "TrafficChange").objects.create
    ids = {k: str(r.pk) for k, r in releases.items()}
    change(environment=production, at=t0, shares={ids["digits1"]: 100}, action="deploy")
    change(environment=production, at=t0 + timedelta(minutes=1), shares={ids["digits1"]: 90, ids["wine1"]: 10},
           action="canary")  # the old bug: wine's canary split digits' traffic
    change(environment=production, at=t0 + timedelta(minutes=2), shares={ids["digits1"]: 100}, action="rollback")
    change(environment=production, at=t0 + timedelta(minutes=3), shares={ids["digits2"]: 100}, action="deploy")
    old.get_model("releases", "ServingSample").objects.create(environment=production, release=releases["wine1"],
                                                              at=t0, requests_per_s=1.0, error_rate=0.0)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    services = {s.model.name: s for s in new.get_model("releases", "Service").objects.select_related("model")}
    assert sorted(services) == ["digits", "wine"]
    rows = new.get_model("releases", "Deployment").objects.order_by("release_id")
    assert [(d.service.model.name, d.role) for d in rows] == [("digits", "warm"), ("digits", "active"),
                                                             ("wine", "stopped")]
    history = new.get_model("releases", "TrafficChange").objects.order_by("at", "id")
    assert [(c.service.model.name, c.action, c.shares) for c in history] == [
        ("digits", "deploy", {ids["digits1"]: 100}),
        ("digits", "canary", {ids["digits1"]: 90}),
        ("wine", "canary", {ids["wine1"]: 10}),
        ("digits", "rollback", {ids["digits1"]: 100}),
        ("wine", "rollback", {}),
        ("digits", "deploy", {ids["digits2"]: 100}),
    ]
    assert new.get_model("releases", "ServingSample").objects.get().service.model.name == "wine"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
