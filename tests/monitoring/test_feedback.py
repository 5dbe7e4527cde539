"""The feedback API: labels joined with collected predictions; bad input counted, never a 500 or a double count."""

import json
from datetime import UTC, datetime

import pytest

from monitoring.models import Label, Prediction
from monitoring.queries import quality_windows
from tests.conftest import token_client

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 1, 12, 0, 7, tzinfo=UTC)


@pytest.fixture
def predictions(serving) -> list[Prediction]:
    rows = [Prediction(prediction_id=f"p{i}", environment=serving["production"], release_id=serving["ids"][1],
                       at=AT.replace(second=7 + 10 * (i // 2)), value=float(i % 3)) for i in range(6)]
    return Prediction.objects.bulk_create(rows)


def post(client, body: object):
    return client.post("/api/v1/feedback/", json.dumps(body), content_type="application/json")


def test_a_batch_is_joined_and_bad_items_are_counted(users, predictions):
    client = token_client(users["ci"], ["feedback"])
    batch = [{"prediction_id": "p0", "label": 0}, {"prediction_id": "p1", "label": 2},
             {"prediction_id": "p2", "label": 2.0}, {"prediction_id": "p0", "label": 1},
             {"prediction_id": "nope", "label": 1}, {"prediction_id": "p3", "label": "cat"},
             {"prediction_id": "p4", "label": True}, {"prediction_id": 5, "label": 1}, ["p5", 1],
             {"prediction_id": "p5"}, {"prediction_id": "p5", "label": 1, "extra": 1}]
    answer = post(client, batch)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 3, "unknown": 1, "duplicate": 1, "invalid": 6}
    assert dict(Label.objects.values_list("prediction__prediction_id", "value")) == {"p0": 0.0, "p1": 2.0, "p2": 2.0}
    again = post(client, {"labels": [*batch[:3], {"prediction_id": "p3", "label": 0}]})
    assert again.json() == {"accepted": 1, "unknown": 0, "duplicate": 3, "invalid": 0}
    assert Label.objects.count() == 4


def test_live_accuracy_per_window_in_sql(users, predictions):
    post(token_client(users["ci"], ["feedback"]), [{"prediction_id": f"p{i}", "label": v}
                                                   for i, v in enumerate([0, 0, 2, 0, 1, 0])])
    rows = quality_windows(Label.objects.all(), 10)
    start = int(AT.timestamp()) // 10
    assert [(r["window"] - start, r["n"], r["correct"], r["mae"]) for r in rows] == [
        (0, 2, 1, 0.5), (1, 2, 2, 0.0), (2, 2, 1, 1.0)]


def test_malformed_bodies_are_400_with_what_is_wrong(users, predictions):
    client = token_client(users["ci"], ["feedback"])
    assert post(client, {"prediction_id": "p0", "label": 0}).json() == {
        "error": "malformed",
        "detail": 'send a JSON array of {"prediction_id": ..., "label": ...}, or {"labels": [...]}'}
    broken = client.post("/api/v1/feedback/", "[{", content_type="application/json")
    assert broken.status_code == 400 and broken.json()["error"] == "parse_error"
    too_many = post(client, [{"prediction_id": "p0", "label": 0}] * 10001)
    assert too_many.status_code == 400 and too_many.json()["detail"] == "10001 labels in one batch; at most 10000"
    assert Label.objects.count() == 0


def test_the_feedback_scope_and_role_are_required(users, predictions):
    assert post(token_client(users["ci"], ["releases:read"]), []).json() == {
        "error": "permission_denied", "detail": "this token lacks the 'feedback' scope"}
    viewer = post(token_client(users["victor"], ["feedback"]), [])
    assert viewer.status_code == 403 and viewer.json()["detail"] == "victor has no role that may feedback"
