"""Shadow traffic from Slipway's side: tell the active release's server where to copy requests, read
the paired figures back (serving/shadow.py does the copying and pairing), and judge them.

The verdict is a gate: ``wait`` until the policy's minutes have passed and it has its minimum of
pairs, then ``pass`` or ``fail`` with the measured values in the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from shipping.targets import Instance

TIMEOUT_S = 5


class ShadowError(RuntimeError):
    """The active release's server refused or could not be reached."""


@dataclass(frozen=True)
class ShadowPolicy:
    minutes: float = 10.0
    min_pairs: int = 200
    min_agreement: float = 0.98  # same-label rate, or mean cosine for embeddings
    max_abs_difference: float = 0.05  # regression
    max_p95_increase: float = 0.2  # shadow p95 over active p95, when the difference is real
    # ... and only when the shadow is also this much slower: at a millisecond, scheduling noise on a busy
    # host moves the ratio past the limit (as the canary's min_p95_increase_seconds).
    min_p95_increase_ms: float = 5.0
    max_error_rate: float = 0.01  # failed or mismatched copies over all copies


@dataclass(frozen=True)
class Verdict:
    decision: str  # wait, pass or fail
    reason: str


def _call(method: str, instance: Instance, token: str, json: dict | None = None) -> dict:
    try:
        answer = requests.request(method, instance.url + "/v1/shadow", json=json, timeout=TIMEOUT_S,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})
    except requests.RequestException as error:
        raise ShadowError(f"{instance.url}: {error}") from error
    if answer.status_code != 200:
        raise ShadowError(f"{instance.url}: HTTP {answer.status_code}: {answer.text[:300]}")
    return answer.json()


def start(active: Instance, token: str, shadow: Instance, share: float, task: str = "") -> dict:
    """Make ``active`` copy ``share`` of its infer requests to ``shadow``; returns the (empty) report."""
    return _call("PUT", active, token, {"url": shadow.url, "share": share, "task": task})


def stop(active: Instance, token: str) -> dict:
    """Stop copying; returns the last report."""
    return _call("DELETE", active, token)


def report(active: Instance) -> dict:
    return _call("GET", active, "")


def verdict(figures: dict, minutes_elapsed: float, policy: ShadowPolicy) -> Verdict:
    """Judge a /v1/shadow report against the policy."""
    pairs = int(figures.get("pairs", 0))
    if minutes_elapsed < policy.minutes or pairs < policy.min_pairs:
        return Verdict("wait", f"{pairs} of {policy.min_pairs} pairs after {minutes_elapsed:.1f} of "
                               f"{policy.minutes:g} minutes")
    failures = []
    copies = pairs + int(figures.get("errors", 0)) + int(figures.get("mismatched", 0))
    error_rate = (copies - pairs) / copies if copies else 0.0
    if error_rate > policy.max_error_rate:
        failures.append(f"error rate {error_rate:.2%} > {policy.max_error_rate:.2%}")
    for name, low in (("same_label_rate", policy.min_agreement), ("mean_cosine", policy.min_agreement)):
        if name in figures and figures[name] < low:
            failures.append(f"{name.replace('_', ' ')} {figures[name]:.4f} < {low:g}")
    if "mean_abs_difference" in figures and figures["mean_abs_difference"] > policy.max_abs_difference:
        failures.append(f"mean abs difference {figures['mean_abs_difference']:.4g} > {policy.max_abs_difference:g}")
    active_p95, shadow_p95 = figures.get("active_p95_ms", 0.0), figures.get("shadow_p95_ms", 0.0)
    if figures.get("p95_difference_is_real") and active_p95 > 0 and \
            shadow_p95 > active_p95 * (1 + policy.max_p95_increase) and \
            shadow_p95 - active_p95 > policy.min_p95_increase_ms:
        failures.append(f"p95 {shadow_p95:.2f} ms vs {active_p95:.2f} ms (+{shadow_p95 / active_p95 - 1:.0%}, "
                        f"interval {figures['p95_difference_interval_ms']})")
    if failures:
        return Verdict("fail", "; ".join(failures))
    return Verdict("pass", f"{pairs} pairs within thresholds")
