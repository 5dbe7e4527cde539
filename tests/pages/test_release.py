"""A release's page: stages, candidates with their figures and reasons, gates, approvals by role,
deciding and picking another candidate, the live partial, and its query count."""

import pytest

from releases.models import Approval, Artifact, AuditEvent, Release
from releases.pages.display import Moment
from releases.pages.queries import Candidate
from releases.pages.release import audit_line, plane_chart
from tests.browser import client_for
from tests.conftest import make_user, token_client
from tests.pages import data as d
from tests.pages import scenes

pytestmark = pytest.mark.django_db


@pytest.fixture
def scene(users) -> scenes.Scene:
    return scenes.build(users)


def page(user, release: Release):
    return client_for(user).get(f"/releases/{release.pk}/")


def test_the_page_asks_for_a_login(client, scene):
    assert client.get(f"/releases/{scene.at_gate.pk}/")["Location"] == f"/login/?next=/releases/{scene.at_gate.pk}/"


def test_candidates_show_their_figures_the_reason_for_each_and_which_was_chosen(users, scene):
    table = page(users["victor"], scene.at_gate).context["candidates"]
    assert [(c.artifact.kind, c.reference, c.chosen, c.failed, c.task_value, c.figures.get("latency_p95_ms"),
             c.reason) for c in table.rows] == [
        ("original", True, False, False, 0.962, 6.4, ""),
        ("int8-dynamic", False, True, False, 0.958, 2.9, "smallest and fastest within the accuracy budget"),
        ("int8-static", False, False, False, 0.941, 2.6, "accuracy 0.941 is below the budget 0.952"),
        ("fp16", False, False, False, 0.962, 6.1, "larger than int8-dynamic"),
        ("pruned", False, False, True, None, None, ""),
    ]
    assert (table.metric, table.budget_limit) == ("accuracy", pytest.approx(0.952))
    assert table.shipped == [("accuracy", "0.958"), ("latency_p50_ms", "2.2 ms"), ("latency_p95_ms", "2.9 ms"),
                             ("latency_p99_ms", "3.4 ms"), ("parity_max_abs_diff", "0.0123"),
                             ("peak_memory_bytes", "8.6\xa0MB"), ("size_bytes", "390.6\xa0KB"),
                             ("throughput_per_s", "410"), ("top1_agreement", "0.991")]
    body = page(users["victor"], scene.at_gate).content.decode()
    assert "pruning needs torch weights; the build is ONNX" in body
    assert "max |Δ| 0.0123" in body and "top-1 0.991" in body


def test_a_candidates_cells_read_as_the_table_writes_them():
    artifact = Artifact(kind="int8-static", recipe={"method": "static", "reduce_range": True, "percentile": 99.99})
    chosen = Candidate(artifact, {"parity_max_abs_diff": 0.01234, "greedy_exact_match": 0.9375, "kl_to_fp32": 0.00123},
                       {"latency_p50_ms": "1.2 ms", "tokens_per_s": "35.1 tokens/s"}, 0.95812, "", chosen=True,
                       reference=False, speed=(0.4312, 0.41, 0.452))
    assert (chosen.css_class, chosen.name, chosen.recipe_text, chosen.p50, chosen.p95, chosen.speed_text,
            chosen.speed_verdict, chosen.task_text, chosen.parity) == (
        "chosen", "int8-static", "method: static, reduce_range: True, percentile: 99.99", "1.2 ms", "—",
        "\u00d70.43 (0.41\u20130.45)", "faster", "0.9581",
        ["max |Δ| 0.0123", "greedy 0.938", "KL 0.0012", "35.1 tokens/s"])
    original = Candidate(Artifact(kind="original", recipe={}, error="pruning needs torch weights"), {}, {}, None,
                         "", chosen=False, reference=True, speed=(1.0, 1.0, 1.0))
    assert (original.css_class, original.name, original.recipe_text, original.speed_text, original.speed_verdict,
            original.task_text, original.parity) == (" failed", "original", "", "\u00d71.00", "", "—", [])


def test_the_plane_puts_candidates_against_the_accuracy_budget(users, scene):
    plane = page(users["victor"], scene.at_gate).context["plane"]
    # Latency relative to the original's: the measured interval where the evaluate stage timed one
    # (fp16 here), the p50 ratio as a point for figures measured without.
    assert plane == {"metric": "accuracy", "higher_is_better": True, "budget": pytest.approx(0.952), "points": [
        {"label": "original", "x": 1.0, "low": 1.0, "high": 1.0, "y": 0.962, "chosen": False},
        {"label": "int8-dynamic", "x": 0.4314, "low": 0.4314, "high": 0.4314, "y": 0.958, "chosen": True},
        {"label": "int8-static", "x": 0.3922, "low": 0.3922, "high": 0.3922, "y": 0.941, "chosen": False},
        {"label": "fp16", "x": 0.94, "low": 0.85, "high": 1.05, "y": 0.962, "chosen": False},
    ], "x_label": "latency relative to the original (95% interval)"}
    body = page(users["victor"], scene.at_gate).content.decode()
    assert "\u00d70.94 (0.85\u20131.05)" in body and "5.7\xa0MB" in body  # fp16's interval and peak memory


def test_a_failed_release_shows_no_candidate_as_chosen(users, scene):
    release = scene.at_gate
    release.status = "failed"
    release.choice_reasons[str(scene.candidates["int8-dynamic"].pk)] = "chosen — int8-dynamic: smallest"
    release.save()
    response = page(users["victor"], release)
    rows = response.context["candidates"].rows
    assert [c.chosen for c in rows] == [False] * len(rows)
    assert rows[1].reason == "selected before the release failed: int8-dynamic: smallest"
    assert response.context["candidates"].shipped == []
    assert "status-chosen" not in response.content.decode()
    answer = token_client(users["victor"], ["releases:read"]).get(f"/api/v1/releases/{release.pk}/").json()
    assert answer["chosen_artifact"] is None  # the API says what the page says
    assert answer["choice_reasons"][str(scene.candidates["int8-dynamic"].pk)] == rows[1].reason


def test_the_api_names_the_chosen_artifact_of_a_release_that_did_not_fail(users, scene):
    release = scene.at_gate
    answer = token_client(users["victor"], ["releases:read"]).get(f"/api/v1/releases/{release.pk}/").json()
    assert release.chosen_artifact_id is not None
    assert answer["chosen_artifact"] == release.chosen_artifact_id


def test_a_failed_language_model_release_shows_nothing_as_shipped(users):
    model = d.make_model("chat", task="language_model")
    release = d.make_release(d.make_version(model, "1", users["ci"]), status="failed")
    d.add_candidate(release, "onnx-fp32", 4_000_000, {"perplexity": 12.0, "tokens_per_s": 40.0})
    d.add_candidate(release, "int4-rtn-b32", 1_000_000, {"perplexity": 12.3, "tokens_per_s": 90.0},
                    reason="chosen — int4-rtn-b32: fastest", chosen=True)
    table = page(users["victor"], release).context["candidates"]
    assert [c.chosen for c in table.rows] == [False, False, False]
    assert table.shipped == []


def test_a_regression_budget_lies_above_the_original(users):
    model = d.make_model("prices", task="regression", accuracy_budget=0.05)
    release = d.make_release(d.make_version(model, "1", users["ci"]), metrics={"rmse": 0.4, "latency_p95_ms": 3.0})
    table = page(users["victor"], release).context["candidates"]
    assert plane_chart(table)["budget"] == pytest.approx(0.45)
    assert [(c.artifact.kind, c.chosen) for c in table.rows] == [("original", True)]
    assert "No compressed candidates: the original is measured as it is." in page(
        users["victor"], release).content.decode()


def test_gates_show_measured_values_against_thresholds(users, scene):
    d.add_gate_check(scene.at_gate, "size_mb", "<=", 0.3, 0.4)
    checks = page(users["victor"], scene.at_gate).context["release"].gate_checks.all()
    assert [(c.name, c.comparator, c.threshold, c.measured, c.passed) for c in checks] == [
        ("accuracy", ">=", 0.9, 0.958, True), ("latency_p95_ms", "<=", 20.0, 2.9, True),
        ("size_mb", "<=", 0.3, 0.4, False)]
    assert "size_mb 0.4 fails &lt;= 0.3" in page(users["victor"], scene.at_gate).content.decode()


def test_a_gate_without_thresholds_says_it_had_nothing_to_check(users):
    model = d.make_model("digits")
    running = d.make_release(d.make_version(model, "1", users["ci"]), "running",
                             [("validate", "succeeded"), ("evaluate", "running"), ("gate", "pending")])
    at_gate = d.make_release(d.make_version(model, "2", users["ci"]))
    assert "No automatic checks yet: they run once the release is evaluated" in page(
        users["victor"], running).content.decode()
    assert "The model's policy sets no thresholds, so the automatic gate had nothing to check." in page(
        users["victor"], at_gate).content.decode()


@pytest.mark.parametrize(("who", "reason"), [
    ("alice", None),
    ("ci", "you are the author of this build; someone else must approve it"),
    ("victor", "you are not in the 'approver' group"),
])
def test_the_page_says_who_may_approve_and_why_a_user_cannot(users, scene, who, reason):
    response = page(users[who], scene.at_gate)
    context = response.context
    assert (context["gate"], context["cannot_approve"], context["still_needed"]) == ("release", reason, 1)
    assert [u.username for u in context["eligible"]] == ["alice", "bob"]
    body = response.content.decode()
    assert ('name="decision" value="approve"' in body) is (reason is None)
    if reason:
        assert f"You cannot decide on this release: {reason}." in body.replace("&#x27;", "'")


def test_approving_records_the_comment_and_then_the_approver_cannot_decide_again(users, scene):
    alice = client_for(users["alice"])
    response = alice.post(f"/releases/{scene.at_gate.pk}/decide/",
                          {"decision": "approve", "comment": "checked the confusion matrix"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Your approval is recorded."]
    assert list(Approval.objects.values_list("user__username", "decision", "comment")) == [
        ("alice", "approve", "checked the confusion matrix")]
    assert Release.objects.get(pk=scene.at_gate.pk).status == "approved"
    assert "checked the confusion matrix" in response.content.decode()


def test_an_approver_who_already_decided_is_told_so(users, scene):
    Approval.objects.create(release=scene.at_gate, gate="release", user=users["alice"], decision="approve")
    d.ReleasePolicy.objects.filter(pk=scene.at_gate.version.model.policy.pk).update(required_approvals=2)
    context = page(users["alice"], scene.at_gate).context
    assert context["cannot_approve"] == "you have already decided at its release gate"
    assert [u.username for u in context["eligible"]] == ["bob"]


@pytest.mark.parametrize(("who", "form", "message"), [
    ("victor", {"decision": "approve"}, "Not recorded: you are not in the 'approver' group."),
    ("ci", {"decision": "approve"}, "Not recorded: you are the author of this build; someone else must approve it."),
    ("alice", {"decision": "maybe"}, "Not recorded: choose approve or reject."),
])
def test_a_refused_decision_explains_itself(users, scene, who, form, message):
    response = client_for(users[who]).post(f"/releases/{scene.at_gate.pk}/decide/", form, follow=True)
    assert [str(m) for m in response.context["messages"]] == [message]
    assert not Approval.objects.exists()


def test_a_rejection_fails_the_release_with_who_and_why(users, scene):
    response = client_for(users["bob"]).post(f"/releases/{scene.at_gate.pk}/decide/",
                                             {"decision": "reject", "comment": "parity too low"}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Your rejection is recorded."]
    assert Release.objects.get(pk=scene.at_gate.pk).failure_reason == "rejected by bob: parity too low"


def test_an_approver_ships_another_candidate_and_the_page_shows_why(users, scene):
    body = page(users["alice"], scene.at_gate).content.decode()
    assert body.count(f'action="/releases/{scene.at_gate.pk}/pick/"') == 2  # int8-static and fp16
    fp16 = scene.candidates["fp16"]
    response = client_for(users["alice"]).post(f"/releases/{scene.at_gate.pk}/pick/", {"artifact": fp16.pk},
                                               follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        f"Release #{scene.at_gate.pk} now ships fp16; the automatic gate passed it again."]
    chosen = [(c.artifact.kind, c.reason) for c in response.context["candidates"].rows if c.chosen]
    assert chosen == [("fp16", f"picked by alice instead of #{scene.candidates['int8-dynamic'].pk}")]


@pytest.mark.parametrize(("who", "candidate", "message"), [
    ("victor", "fp16", "Not changed: you are not in the 'approver' group."),
    ("alice", "pruned", "Not changed: candidate pruned failed: pruning needs torch weights; the build is ONNX."),
    ("alice", None, "Not changed: choose one of the candidates in the table."),
])
def test_a_refused_pick_explains_itself(users, scene, who, candidate, message):
    form = {"artifact": scene.candidates[candidate].pk} if candidate else {}
    response = client_for(users[who]).post(f"/releases/{scene.at_gate.pk}/pick/", form, follow=True)
    assert [str(m) for m in response.context["messages"]] == [message]
    assert Release.objects.get(pk=scene.at_gate.pk).chosen_artifact == scene.candidates["int8-dynamic"]


def test_a_pick_that_fails_the_gate_changes_nothing(users, scene):
    d.ReleasePolicy.objects.filter(pk=scene.at_gate.version.model.policy.pk).update(min_accuracy=0.95)
    static = scene.candidates["int8-static"]
    response = client_for(users["alice"]).post(f"/releases/{scene.at_gate.pk}/pick/", {"artifact": static.pk},
                                               follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Not changed: int8-static does not pass the automatic gate: accuracy 0.941 fails >= 0.95."]
    assert Release.objects.get(pk=scene.at_gate.pk).chosen_artifact == scene.candidates["int8-dynamic"]


def test_nobody_picks_once_someone_decided_and_the_buttons_go(users, scene):
    Approval.objects.create(release=scene.at_gate, gate="release", user=users["bob"], decision="approve")
    d.ReleasePolicy.objects.filter(pk=scene.at_gate.version.model.policy.pk).update(required_approvals=2)
    assert "/pick/" not in page(users["alice"], scene.at_gate).content.decode()
    fp16 = scene.candidates["fp16"]
    response = client_for(users["alice"]).post(f"/releases/{scene.at_gate.pk}/pick/", {"artifact": fp16.pk},
                                               follow=True)
    assert [str(m) for m in response.context["messages"]] == [
        "Not changed: people have already decided on the current choice; picking another would change what "
        "they approved."]


def test_the_live_part_polls_while_the_release_runs_and_stops_when_it_settles(users):
    model = d.make_model("digits")
    running = d.make_release(d.make_version(model, "1", users["ci"]), "running",
                             [("validate", "succeeded"), ("evaluate", "running"), ("gate", "pending")])
    d.StageRun.objects.filter(release=running, name="evaluate").update(progress=40, step="latency, batch 3 of 8")
    client = client_for(users["victor"])
    live = client.get(f"/releases/{running.pk}/live/").content.decode()
    assert f'hx-get="/releases/{running.pk}/live/" hx-trigger="every 1s"' in live
    assert 'value="40.0"' in live and "latency, batch 3 of 8" in live
    for status, stages in (("awaiting_approval", d.STAGES_AT_GATE), ("released", d.STAGES_DONE)):
        settled = d.make_release(d.make_version(model, status, users["ci"]), status, stages)
        assert "hx-get" not in client.get(f"/releases/{settled.pk}/live/").content.decode()


def test_a_failed_stage_shows_its_error_and_the_release_its_reason(users):
    model = d.make_model("digits")
    failed = d.make_release(d.make_version(model, "1", users["ci"]), "failed",
                            [("validate", "failed"), ("evaluate", "skipped")],
                            failure_reason="validate: model: expects 64 pixels, got 10")
    d.StageRun.objects.filter(release=failed, name="validate").update(error="model: expects 64 pixels, got 10")
    body = page(users["victor"], failed).content.decode()
    assert '<p class="error" role="alert">validate: model: expects 64 pixels, got 10</p>' in body
    assert '<p class="error">model: expects 64 pixels, got 10</p>' in body


def test_an_unknown_release_is_not_found(users):
    assert client_for(users["victor"]).get("/releases/999/").status_code == 404


@pytest.mark.parametrize("rows", [1, 30])
def test_the_release_page_takes_the_same_queries_however_many_rows(users, scene, rows, django_assert_num_queries):
    for i in range(rows):
        d.add_candidate(scene.at_gate, "int8-mixed", 1000 + i, {"accuracy": 0.95, "latency_p95_ms": 2.0},
                        reason="not chosen")
        d.add_gate_check(scene.at_gate, f"check-{i}", ">=", 0.0, 1.0)
        Approval.objects.create(release=scene.at_gate, gate="production", user=make_user(f"u{i}"),
                                decision="approve", comment="fine")
        AuditEvent.objects.create(actor_label="worker", action="stage.start", release=scene.at_gate)
    client = client_for(users["alice"])
    with django_assert_num_queries(11):  # the monitoring panel loads after the page (monitoring/pages.py)
        response = client.get(f"/releases/{scene.at_gate.pk}/")
    assert response.status_code == 200
    # Every candidate, check and decision is on the page, however many there are.
    assert sum(row.artifact.kind == "int8-mixed" for row in response.context["candidates"].rows) == rows
    assert sum(a.gate == "production" for a in response.context["decisions"]) == rows
    body = response.content.decode()
    assert all(f"check-{i}" in body for i in range(rows))
    assert all(f"u{i}" in body for i in range(rows))
    with django_assert_num_queries(11):
        assert client.get(f"/releases/{scene.at_gate.pk}/live/").status_code == 200


def test_a_status_label_is_what_get_status_display_says():
    for status in [*Release._meta.get_field("status").get_choices(include_blank=False), ("gone", "gone")]:
        release = Release(status=status[0])
        assert release.status_label == release.get_status_display()


def test_an_audit_line_says_who_did_what_with_the_status_change_reason_and_comment_escaped():
    event = AuditEvent(actor_label="<alice>", action="release.approve", subject="release 7",
                       before={"status": "awaiting_approval"}, after={"status": "approved", "comment": "ok & go"},
                       reason="two approvals")
    event.when = {"at": Moment(iso="2026-03-01T03:15:00+00:00", absolute="2026-03-01 03:15:00 UTC",
                               relative="5 minutes ago")}
    assert audit_line(event) == (
        '<span><time datetime="2026-03-01T03:15:00+00:00" title="5 minutes ago">2026-03-01 03:15:00 UTC</time> '
        '<span class="muted">(5 minutes ago)</span></span>\n'
        '      <strong>&lt;alice&gt;</strong> release.approve <span class="muted">release 7 awaiting_approval'
        ' \u2192 approved</span>\n'
        '      <div class="reason">two approvals</div>\n'
        '      <div class="reason">\u201cok &amp; go\u201d</div>')
    event.before, event.after, event.reason = {}, {}, ""
    assert audit_line(event).endswith('<span class="muted">release 7</span>')
