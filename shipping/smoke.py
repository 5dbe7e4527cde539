"""Smoke test of a deployed endpoint: a few evaluation samples must come back right.

Each sample goes as an Open Inference Protocol request to ``/v2/models/<model>/infer``. For every
sample: HTTP 200, the identity headers present (and naming the expected release), every output
finite, with one row per input row and the expected trailing shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import requests

from serving import oip

IDENTITY_HEADERS = ("X-Model-Name", "X-Model-Version", "X-Model-Sha256", "X-Release-Id", "X-Prediction-Id")


@dataclass(frozen=True)
class SmokeResult:
    passed: bool
    checked: int
    failures: list[str]


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    first = next(iter(inputs.values()))
    return first.shape[0] if first.ndim else 1


def _check_outputs(
    index: int, outputs: object, rows: int, output_shapes: Mapping[str, Sequence[int | None]] | None
) -> list[str]:
    if not isinstance(outputs, dict) or not outputs:
        return [f"sample {index}: no outputs in the answer"]
    failures = []
    for name, value in outputs.items():
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            failures.append(f"sample {index}: output {name!r} is not numeric")
            continue
        if not np.all(np.isfinite(array)):
            failures.append(f"sample {index}: output {name!r} has NaN or infinite values")
        if array.ndim == 0 or array.shape[0] != rows:
            failures.append(f"sample {index}: output {name!r} has shape {list(array.shape)}, not {rows} rows")
        wanted = None if output_shapes is None else output_shapes.get(name)
        if wanted is not None and (
            array.ndim != len(wanted) + 1
            or any(want is not None and got != want for got, want in zip(array.shape[1:], wanted, strict=False))
        ):
            failures.append(
                f"sample {index}: output {name!r} has shape {list(array.shape)}, "
                f"expected [rows, {', '.join('?' if w is None else str(w) for w in wanted)}]"
            )
    return failures


def smoke_test(
    url: str,
    model_name: str,
    samples: Sequence[Mapping[str, np.ndarray]],
    expected_release_id: str | None = None,
    output_shapes: Mapping[str, Sequence[int | None]] | None = None,
    timeout: float = 10.0,
) -> SmokeResult:
    """POST each sample (named input arrays, one batch each) to the model's infer path and check the answers.

    ``output_shapes`` gives, per output name, the expected shape after the batch dimension
    (None for any size).
    """
    if not samples:
        return SmokeResult(passed=False, checked=0, failures=["no evaluation samples to send"])
    failures: list[str] = []
    with requests.Session() as session:
        try:
            answer = session.get(url + oip.model_path(model_name), timeout=timeout)
            metadata = answer.json() if answer.status_code == 200 else None
        except (requests.RequestException, ValueError) as error:
            return SmokeResult(passed=False, checked=0, failures=[f"model metadata: request failed: {error}"])
        if not isinstance(metadata, dict):
            return SmokeResult(passed=False, checked=0,
                               failures=[f"model metadata: HTTP {answer.status_code}: {answer.text[:300]}"])
        for index, sample in enumerate(samples):
            inputs = oip.as_declared(sample, metadata)
            body = oip.request_document(inputs)
            try:
                answer = session.post(url + oip.infer_path(model_name), json=body, timeout=timeout)
            except requests.RequestException as error:
                failures.append(f"sample {index}: request failed: {error}")
                continue
            if answer.status_code != 200:
                failures.append(f"sample {index}: HTTP {answer.status_code}: {answer.text[:300]}")
                continue
            missing = [header for header in IDENTITY_HEADERS if not answer.headers.get(header)]
            if missing:
                failures.append(f"sample {index}: headers missing: {', '.join(missing)}")
            served = answer.headers.get("X-Release-Id")
            if expected_release_id is not None and served != expected_release_id:
                failures.append(f"sample {index}: answered by release {served!r}, not {expected_release_id!r}")
            try:
                outputs = oip.response_outputs(answer.json())
            except (ValueError, KeyError, TypeError):
                failures.append(f"sample {index}: the answer is not an inference response")
                continue
            failures += _check_outputs(index, outputs, _rows(inputs), output_shapes)
    return SmokeResult(passed=not failures, checked=len(samples), failures=failures)
