"""Rollback drills through a real HAProxy and real model servers, on PostgreSQL: back to the warm release
and forward again, timed and recorded; refused when they must not run; a failed one recorded with why."""

import pytest
from django.utils import timezone

from monitoring.models import ShadowRun
from releases import drills, routing
from releases.health import release_health
from releases.models import AuditEvent, Deployment, RollbackDrill, StageRun, TrafficChange
from shipping import proxy
from tests.conftest import make_user, token_client
from tests.haproxy_scene import served_by

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)
DRILL = "/api/v1/environments/production/models/{}/drill/"


def roles(model: str) -> list[tuple[str, int]]:
    return list(Deployment.objects.filter(service__model__name=model).order_by("release_id")
                .values_list("role", "traffic_percent"))


def weights(config, model: str) -> dict[int, int]:
    """Each serving slot's port → its weight in the model's HAProxy backend."""
    return {state.port: state.weight for state in proxy.servers(config, "production", model) if not state.maintenance}


def test_a_drill_rolls_one_model_back_and_forward_and_records_the_times(production_behind_haproxy, users):
    releases, config = production_behind_haproxy["releases"], production_behind_haproxy["config"]
    previous, serving, wine = releases["1.0.0"], releases["1.1.0"], releases["2.0.0"]
    olga = make_user("olga", "on-call")
    wine_before = weights(config, "wine")

    answer = token_client(olga, ["rollback"]).post(DRILL.format("digits"))

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert {k: body[k] for k in ("model", "environment", "actor", "scheduled", "current", "previous", "result",
                                 "reason")} == {
        "model": "digits", "environment": "production", "actor": "olga (token test)", "scheduled": False,
        "current": serving.pk, "previous": previous.pk, "result": "ok", "reason": ""}
    assert body["back_ms"] > 0 and body["forward_ms"] > 0  # figures, not a timed assertion
    assert (served_by(config, "digits"), served_by(config, "wine")) == (str(serving.pk), str(wine.pk))
    assert roles("digits") == [("warm", 0), ("active", 100)]
    ports = {d.release_id: d.instance["port"] for d in Deployment.objects.filter(service__model__name="digits")}
    assert weights(config, "digits") == {ports[serving.pk]: 100, ports[previous.pk]: 0}
    assert weights(config, "wine") == wine_before
    moves = TrafficChange.objects.filter(service__model__name="digits", action="drill").order_by("at", "id")
    assert [(m.shares, m.reason, m.actor) for m in moves] == [
        ({str(previous.pk): 100}, f"drill: back to #{previous.pk}", olga),
        ({str(serving.pk): 100}, f"drill: forward to #{serving.pk}", olga)]
    assert not TrafficChange.objects.filter(service__model__name="wine", action="drill").exists()
    audit = AuditEvent.objects.get(action="environment.drill_result")
    assert (audit.actor_label, audit.subject, audit.after) == ("olga (token test)", "environment production", {
        "model": "digits", "ok": True, "back_ms": body["back_ms"], "forward_ms": body["forward_ms"],
        "current": serving.pk, "previous": previous.pk})
    assert AuditEvent.objects.filter(action="environment.drill").count() == 2

    listed = token_client(olga, ["releases:read"]).get(DRILL.format("digits").replace("drill/", "drills/")).json()
    assert [(d["id"], d["result"]) for d in listed["results"]] == [(body["id"], "ok")]
    digits = next(h for h in release_health() if (h.model, h.environment) == ("digits", "production"))
    assert (digits.deployments, digits.failed_changes, digits.restore_times) == (2, 0, [])  # drills count as neither


def test_staging_schedule_drills_every_model_it_can(production_behind_haproxy, monkeypatch):
    monkeypatch.setattr(drills, "SCHEDULED_ENVIRONMENT", "production")  # the scene serves in production
    Deployment.objects.filter(service__model__name="wine", role="warm").update(role="stopped")

    assert drills.drill_staging() == {"ok": 1, "failed": 0, "passed_over": 1}
    drill = RollbackDrill.objects.get()
    assert (drill.service.model.name, drill.scheduled, drill.actor, drill.actor_label, drill.ok) == (
        "digits", True, None, "drill schedule", True)


def test_a_drill_is_refused_with_the_reason_and_moves_nothing(production_behind_haproxy, users):
    releases, config = production_behind_haproxy["releases"], production_behind_haproxy["config"]
    olga = make_user("olga", "on-call")
    api = token_client(olga, ["rollback"])
    changes = TrafficChange.objects.count()

    def refused(model: str = "digits") -> tuple[int, dict]:
        answer = api.post(DRILL.format(model))
        return answer.status_code, answer.json()

    digits = Deployment.objects.get(release=releases["1.1.0"])
    serving, previous = releases["1.1.0"].pk, releases["1.0.0"].pk
    stage = StageRun.objects.create(release=releases["1.1.0"], name="canary", position=8, status="running")
    assert refused() == (409, {"error": "conflict", "detail": f"no rollback drill of digits in production: release "
                                                             f"#{serving} is being deployed to production now"})
    stage.delete()
    run = ShadowRun.objects.create(service=digits.service, active=releases["1.1.0"],
                                   shadow=releases["1.0.0"], share=0.5, started_at=timezone.now())
    assert refused()[1]["detail"] == (f"no rollback drill of digits in production: release #{previous} runs in "
                                      f"shadow of #{serving}; drill once the shadow run has stopped")
    run.delete()
    Deployment.objects.filter(release=releases["1.0.0"]).update(role="canary", traffic_percent=0)
    assert refused()[1]["detail"] == ("no rollback drill of digits in production: a canary of digits in production "
                                      "runs; drill once it is promoted or aborted")
    Deployment.objects.filter(release=releases["1.0.0"]).update(role="stopped")
    assert refused() == (409, {"error": "conflict", "detail": "no rollback drill of digits in production: no "
                                                             "earlier release of digits in production is kept warm "
                                                             "to roll back to"})
    assert refused("nope") == (404, {"error": "not_found", "detail": "model 'nope' has never served in production"})
    assert token_client(olga, ["releases:read"]).post(DRILL.format("wine")).json() == {
        "error": "permission_denied", "detail": "this token lacks the 'rollback' scope"}
    assert token_client(users["victor"], ["rollback"]).post(DRILL.format("wine")).json() == {
        "error": "permission_denied", "detail": "victor has no role that may rollback"}
    assert (TrafficChange.objects.count(), RollbackDrill.objects.count()) == (changes, 0)
    assert not AuditEvent.objects.filter(action__startswith="environment.drill").exists()
    assert served_by(config, "digits") == str(releases["1.1.0"].pk)


def test_a_drill_whose_warm_server_is_dead_fails_and_traffic_stays(production_behind_haproxy, users):
    releases, config = production_behind_haproxy["releases"], production_behind_haproxy["config"]
    warm = Deployment.objects.select_related("service__environment").get(release=releases["1.0.0"])
    routing.target_for(warm.service.environment).stop(routing.instance_of(warm), timeout=10)

    answer = token_client(users["ci"], ["rollback"]).post(DRILL.format("digits"))

    assert answer.status_code == 201
    body = answer.json()
    assert (body["result"], body["back_ms"], body["forward_ms"]) == ("failed", None, None)
    assert body["reason"].startswith(f"not rolled back, #{releases['1.1.0'].pk} serves on: the warm release "
                                     f"#{releases['1.0.0'].pk} is not ready, so traffic stays where it is")
    assert served_by(config, "digits") == str(releases["1.1.0"].pk)
    assert roles("digits") == [("warm", 0), ("active", 100)]
    assert not TrafficChange.objects.filter(action="drill").exists()
    assert AuditEvent.objects.get(action="environment.drill_result").after["ok"] is False
