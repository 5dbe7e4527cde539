"""A bad canary under load loses its traffic automatically — real worker, real beat (it judges the canary),
real HAProxy, model servers as local processes, a steady load client on production's address.

The second release passes its evaluation and smoke test (inputs in range) and fails inside ONNX Runtime on
the production traffic (pixels out of range; tests/monitoring/alertloop.faulty_digits_onnx). The analysis
judges it failed on its error rate, all of the model's traffic goes back to the stable release, whose
requests never fail, and the canary's server is stopped."""

import time
from collections import Counter

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from releases import routing
from releases.models import Canary, Deployment, ReleasePolicy, TrafficChange
from serving import oip
from tests.conftest import served_by, to_production, token_client, wait_for_status
from tests.factories import digits_model
from tests.monitoring.alertloop import faulty_digits_onnx
from tests.shipping.load import SteadyLoad
from tests.workers.test_stopping import PRODUCTION, wait_until

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_canary_that_fails_under_load_is_judged_failed_and_all_traffic_returns_to_stable(celery_worker, beat,
                                                                                            users):
    ci, alice, bob = (token_client(users[n]) for n in ("ci", "alice", "bob"))
    stable = to_production(ci, alice, bob, "1")
    assert wait_for_status(stable, "released", "failed").status == "released"
    ReleasePolicy.objects.filter(model__name="digits").update(canary_minutes=0.1, canary_min_requests=5,
                                                              canary_percent=25)
    assert served_by(PRODUCTION) == str(stable)

    out_of_range = oip.request_document({"pixels": (digits_model().eval_inputs[:4] * 3).astype(np.float32)})
    with SteadyLoad(PRODUCTION + oip.infer_path("digits"), rate=40, clients=2, body=out_of_range) as load:
        bad = to_production(ci, alice, bob, "2", artifact=SimpleUploadedFile("model.onnx", faulty_digits_onnx()))
        release = wait_for_status(bad, "failed", "released", timeout=120)
        judged = time.perf_counter()
        time.sleep(1)  # requests sent after the verdict, to see who answers them
    assert release.status == "failed"
    canary = Canary.objects.get(deployment__release_id=bad)
    assert canary.status == "failed" and canary.verdict.startswith("error rate"), canary.verdict
    assert release.failure_reason == f"canary: canary rolled back automatically: {canary.verdict}"

    answered = Counter((o.release, o.status) for o in load.outcomes)
    assert answered[(str(bad), 422)] > 0 and answered[(str(bad), 200)] == 0, answered  # the canary failed
    assert set(answered) == {(str(stable), 200), (str(bad), 422)}, answered  # stable never failed, none dropped
    assert {o.release for o in load.sent_after(judged)} == {str(stable)}
    assert [c.action for c in TrafficChange.objects.filter(service__environment__name="production")
            .order_by("at", "id")] == ["deploy", "canary", "rollback"]
    assert TrafficChange.objects.filter(service__environment__name="production").first().shares == {
        str(stable): 100}
    assert list(Deployment.objects.filter(service__environment__name="production").order_by("release_id")
                .values_list("release_id", "role", "traffic_percent")) == [(stable, "active", 100), (bad, "stopped", 0)]
    wait_until("the canary's server confirmed stopped",
               lambda: Deployment.objects.get(release_id=bad, service__environment__name="production").stopped_at)
    gone = Deployment.objects.select_related("service__environment").get(
        release_id=bad, service__environment__name="production")
    assert not routing.target_for(gone.environment).is_alive(routing.instance_of(gone))
