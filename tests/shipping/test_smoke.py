from collections.abc import Callable

import numpy as np

from shipping.smoke import SmokeResult, smoke_test
from shipping.targets import Instance

SAMPLES = [{"x": np.array([[1, 2, 3, 4], [0, 0, 0, 0]], dtype=np.float32)}, {"x": np.ones((1, 4))}]


def test_smoke_passes_on_a_good_release(launch: Callable[..., Instance]) -> None:
    instance = launch("21")
    result = smoke_test(instance.url, "linear", SAMPLES, expected_release_id="21", output_shapes={"scores": [3]})
    assert result == SmokeResult(passed=True, checked=2, failures=[])


def test_smoke_reports_every_problem(launch: Callable[..., Instance]) -> None:
    instance = launch("22")
    overflow = {"x": np.array([[3e38, 0, 0, 3e38]], dtype=np.float32)}  # float32 sum overflows to inf
    samples = [SAMPLES[0], {"x": np.ones((1, 3))}, overflow]
    result = smoke_test(instance.url, "linear", samples, expected_release_id="21", output_shapes={"scores": [4]})
    assert (result.passed, result.checked) == (False, 3)
    assert result.failures[:2] == [
        "sample 0: answered by release '22', not '21'",
        "sample 0: output 'scores' has shape [2, 3], expected [rows, 4]",
    ]
    assert result.failures[2].startswith('sample 1: HTTP 400: {"error":"input \'x\' has size 3 on axis 1')
    assert result.failures[3:] == [
        "sample 2: answered by release '22', not '21'",
        "sample 2: output 'scores' has NaN or infinite values",
        "sample 2: output 'scores' has shape [1, 3], expected [rows, 4]",
    ]
    assert smoke_test(instance.url, "linear", []) == SmokeResult(False, 0, ["no evaluation samples to send"])


def test_smoke_against_nothing_listening() -> None:
    result = smoke_test("http://127.0.0.1:1", "linear", SAMPLES[:1], timeout=2)
    assert not result.passed
    assert result.failures[0].startswith("model metadata: request failed: ")
