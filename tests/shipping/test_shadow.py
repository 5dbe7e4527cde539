"""Placing a shadow on a running active release, reading its pairs and judging them."""

import time
from collections.abc import Callable

import numpy as np
import pytest
import requests

from serving import oip
from shipping import shadow
from shipping.shadow import ShadowError, ShadowPolicy, Verdict
from shipping.targets import Instance
from tests.shipping.load import LINEAR_BODY, LINEAR_INFER

TOKEN = "control-token-for-tests"


def test_a_shadow_is_placed_at_run_time_paired_judged_and_removed(launch: Callable[..., Instance]) -> None:
    active, candidate = launch("A", control_token=TOKEN), launch("B")
    with pytest.raises(ShadowError, match="HTTP 401"):
        shadow.start(active, "wrong", candidate, 1.0)
    with pytest.raises(ShadowError, match=r"HTTP 403: .*no control token"):
        shadow.start(candidate, TOKEN, active, 1.0)
    assert shadow.start(active, TOKEN, candidate, 1.0, "regression")["pairs"] == 0
    with requests.Session() as session:
        for n in range(12):
            body = oip.request_document({"x": np.array([[n, 1, 2, 3]], dtype=np.float32)})
            answer = session.post(active.url + LINEAR_INFER, json=body, timeout=5)
            assert answer.headers["X-Release-Id"] == "A"
    deadline = time.monotonic() + 20
    while (figures := shadow.report(active))["copied"] < 12 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (figures["pairs"], figures["mean_abs_difference"], figures["errors"]) == (12, 0.0, 0)
    policy = ShadowPolicy(minutes=0.0, min_pairs=10)
    assert shadow.verdict(figures, 0.0, policy) == Verdict("pass", "12 pairs within thresholds")
    assert shadow.verdict(figures, 0.0, ShadowPolicy(minutes=0.0, min_pairs=50)).decision == "wait"
    assert shadow.stop(active, TOKEN)["pairs"] == 12
    requests.post(active.url + LINEAR_INFER, json=LINEAR_BODY, timeout=5)
    assert requests.get(active.url + "/v1/shadow", timeout=5).status_code == 404


def test_the_verdict_states_what_failed() -> None:
    figures = {"pairs": 400, "errors": 10, "mismatched": 0, "same_label_rate": 0.9, "active_p95_ms": 10.0,
               "shadow_p95_ms": 20.0, "p95_difference_is_real": True, "p95_difference_interval_ms": [8.0, 11.0]}
    result = shadow.verdict(figures, 30.0, ShadowPolicy())
    assert result.decision == "fail"
    assert result.reason == ("error rate 2.44% > 1.00%; same label rate 0.9000 < 0.98; "
                             "p95 20.00 ms vs 10.00 ms (+100%, interval [8.0, 11.0])")
    assert shadow.verdict(figures | {"pairs": 100}, 30.0, ShadowPolicy()).decision == "wait"
    quick = {"pairs": 400, "active_p95_ms": 0.53, "shadow_p95_ms": 0.68, "p95_difference_is_real": True,
             "p95_difference_interval_ms": [0.08, 0.19]}  # +29 %, but 0.15 ms: scheduling noise, not a slower model
    assert shadow.verdict(quick, 30.0, ShadowPolicy()).decision == "pass"
    assert shadow.verdict(figures, 5.0, ShadowPolicy()).reason == "400 of 200 pairs after 5.0 of 10 minutes"
