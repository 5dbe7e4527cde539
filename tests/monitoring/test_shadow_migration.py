"""Migrations 0004-0005 move shadow runs from their environment to their model's service there."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("monitoring", "0003_collect_serving"), ("releases", "0014_canaries")]
AFTER = [("monitoring", "0005_shadow_runs_constraints")]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_shadow_run_finds_its_models_service():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE).apps
        production = old.get_model("releases", "Environment").objects.get(name="production")
        user = old.get_model("auth", "User").objects.create(username="ci")
        artifact = old.get_model("releases", "Artifact").objects.create(
            sha256="0" * 64, size_bytes=1, kind="original", file_format="onnx")
        model = old.get_model("releases", "Model").objects.create(name="wine", task="classification")
        versions = [old.get_model("releases", "ModelVersion").objects.create(
            model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=user)
            for label in ("1", "2")]
        releases = [old.get_model("releases", "Release").objects.create(version=version, status="released")
                    for version in versions]
        old.get_model("monitoring", "ShadowRun").objects.create(
            environment=production, active=releases[0], shadow=releases[1], share=0.1, started_at=timezone.now())

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        run = new.get_model("monitoring", "ShadowRun").objects.select_related("service__model",
                                                                              "service__environment").get()
        assert (run.service.model.name, run.service.environment.name) == ("wine", "production")
    finally:  # the rest of the suite runs on the latest schema (releases went back to 0014 above)
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
