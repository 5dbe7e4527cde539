"""Which audit events become which webhook events, with what in their payload."""

import pytest

from releases import approvals
from releases.actors import Actor
from releases.models import StageRun
from releases.statemachine import record, transition_release, transition_stage
from tests.conftest import make_user
from tests.pages import data as d
from tests.webhooks.helpers import fire_alert, subscribe
from tests.webhooks.receiver import dead_url
from webhooks.models import Delivery

pytestmark = pytest.mark.django_db
WORKER = Actor.system("worker@test")


@pytest.fixture
def release(users):
    version = d.make_version(d.make_model("digits", production_approvals=2), "1.0.0", users["ci"])
    return d.make_release(version, status="running", stages=[("validate", "succeeded"), ("gate", "running"),
                                                            ("package", "pending")])


def sent() -> list[tuple[str, int | None, dict]]:
    """(event, release id, payload without the fields every event has) of each delivery, oldest first."""
    common = ("event", "at", "actor", "release", "audit_event")
    return [(x.event, x.release_id, {k: v for k, v in x.payload.items() if k not in common})
            for x in Delivery.objects.order_by("id")]


def wait_at(release, stage_name: str) -> None:
    """What the worker does when a gate stage asks for people."""
    stage = StageRun.objects.get(release=release, name=stage_name)
    transition_stage(stage.pk, "wait", actor=WORKER)
    transition_release(release.pk, "await_approval", actor=WORKER)


def test_a_received_build_names_its_release_and_version(users, release):
    subscribe(dead_url())
    record(Actor.person(users["ci"]), "build.received", release=release, subject=str(release.version),
           after={"model": "digits", "version": "1.0.0"})
    [delivery] = Delivery.objects.all()
    assert delivery.payload == {
        "event": "build_received", "at": delivery.payload["at"], "actor": "ci",
        "release": {"id": release.pk, "model": "digits", "version": "1.0.0", "status": "running",
                    "path": f"/releases/{release.pk}/"},
        "model": "digits", "version": "1.0.0", "audit_event": delivery.payload["audit_event"]}


def test_the_release_gate_waiting_then_approved(users, release):
    subscribe(dead_url())
    wait_at(release, "gate")
    approvals.decide(release.pk, users["alice"], "approve", "fine")
    assert sent() == [("gate_waiting", release.pk, {"gate": "release", "approvals_required": 1}),
                      ("approved", release.pk, {"gate": "release", "reason": ""})]


def test_a_rejection_names_the_gate_and_who_rejected(users, release):
    subscribe(dead_url())
    wait_at(release, "gate")
    approvals.decide(release.pk, users["alice"], "reject", "too slow")
    assert sent()[1:] == [("rejected", release.pk, {"gate": "release", "reason": "rejected by alice: too slow"})]


def test_the_production_gate_waiting_says_production_and_its_approvals(users):
    version = d.make_version(d.make_model("digits", production_approvals=2), "1.0.0", users["ci"])
    release = d.make_release(version, status="shipping", stages=[("gate", "succeeded"),
                                                                 ("production_gate", "running")])
    subscribe(dead_url(), ("gate_waiting",))
    wait_at(release, "production_gate")
    assert sent() == [("gate_waiting", release.pk, {"gate": "production", "approvals_required": 2})]


def test_a_deploy_and_a_promotion_say_deployed_with_the_release_that_takes_all_traffic(users, release):
    other = d.make_release(release.version, status="released")
    subscribe(dead_url())
    record(WORKER, "environment.deploy", subject="environment staging", before={"shares": {}},
           after={"shares": {str(release.pk): 100}})
    record(WORKER, "environment.promote", subject="environment production",
           before={"shares": {str(other.pk): 90, str(release.pk): 10}}, after={"shares": {str(release.pk): 100}})
    assert sent() == [
        ("deployed", release.pk, {"environment": "staging", "shares": {str(release.pk): 100}}),
        ("deployed", release.pk, {"environment": "production", "shares": {str(release.pk): 100}})]


def test_a_failed_canary_says_canary_failed_once_and_never_rolled_back(users):
    version = d.make_version(d.make_model("digits"), "1.0.1", users["ci"])
    stable = d.make_release(version, status="released", stages=[])
    canary = d.make_release(version, status="shipping", stages=[("canary", "running")])
    subscribe(dead_url())
    # What workers.stages.deploy.run_canary and workers.runner.fail record when the analysis fails.
    record(WORKER, "environment.rollback", subject="environment production",
           before={"shares": {str(stable.pk): 90, str(canary.pk): 10}}, after={"shares": {str(stable.pk): 100}},
           reason=f"canary analysis of release #{canary.pk}: error rate 0.2 > 0.01")
    stage = StageRun.objects.get(release=canary, name="canary")
    transition_stage(stage.pk, "fail", actor=WORKER, reason="canary rolled back automatically: error rate 0.2 > 0.01")
    transition_release(canary.pk, "fail", actor=WORKER, reason="canary: canary rolled back automatically")
    assert sent() == [("canary_failed", canary.pk, {
        "environment": "production", "reason": "canary rolled back automatically: error rate 0.2 > 0.01"})]


def test_a_release_failing_before_its_canary_sends_nothing(users, release):
    subscribe(dead_url())
    stage = StageRun.objects.get(release=release, name="gate")
    transition_stage(stage.pk, "fail", actor=WORKER, reason="automatic gate: accuracy 0.5 fails >= 0.9")
    transition_release(release.pk, "fail", actor=WORKER, reason="gate: automatic gate")
    assert sent() == []


def test_a_rollback_by_a_person_says_rolled_back_from_which_release_to_which(users):
    version = d.make_version(d.make_model("digits"), "1.0.1", users["ci"])
    previous, serving = d.make_release(version, status="released"), d.make_release(version, status="released")
    olga = make_user("olga", "on-call")
    subscribe(dead_url(), ("rolled_back",))
    record(Actor.person(olga), "environment.rollback", subject="environment production",
           before={"shares": {str(serving.pk): 100}}, after={"shares": {str(previous.pk): 100}}, reason="p95 doubled")
    assert sent() == [("rolled_back", serving.pk, {"environment": "production", "to_release": previous.pk,
                                                   "reason": "p95 doubled"})]
    assert Delivery.objects.get().payload["actor"] == "olga"


def test_a_model_filter_keeps_other_models_events_out(users, release):
    other = d.make_release(d.make_version(d.make_model("faces"), "2.0.0", users["ci"]), status="running")
    subscribe(dead_url(), ("build_received", "alert_firing"), model=release.version.model)
    for r in (release, other):
        record(WORKER, "build.received", release=r, subject=str(r.version))
    fire_alert()  # about no release: only subscriptions without a model filter hear of it
    assert [(x.event, x.release_id) for x in Delivery.objects.all()] == [("build_received", release.pk)]


def test_every_subscription_that_wants_the_event_gets_its_own_delivery_and_others_none(users, release):
    a, b = subscribe(dead_url(), ("alert_firing",)), subscribe(dead_url(), ("alert_firing", "deployed"))
    subscribe(dead_url(), ("deployed",))
    fire_alert()
    record(WORKER, "stage.start", release=release, subject="stage gate")
    rows = list(Delivery.objects.order_by("subscription_id").values_list("subscription_id", "event"))
    assert rows == [(a.pk, "alert_firing"), (b.pk, "alert_firing")]
    assert len({x.uuid for x in Delivery.objects.all()}) == 2
