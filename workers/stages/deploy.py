"""deploy_staging and canary: start the release's server, check it, and give it traffic.

Staging takes the release whole after a smoke test. Production takes it as a canary at the
policy's share for the policy's minutes, compares its serving metrics with the stable release's,
and promotes it or takes it out again with the measured values as the reason.
"""

import time

from django.db import transaction
from django.utils import timezone

from monitoring.shadowing import canary_refusal
from releases import deploys
from releases.actors import Actor
from releases.models import Deployment, Environment, ServingSample
from releases.storage import get_store
from shipping.canary import Sample, Thresholds, analyse, scrape, window
from shipping.llm_smoke import smoke_test_language_model
from shipping.proxy import ProxyError
from shipping.smoke import SmokeResult, smoke_test
from shipping.targets import Instance, TargetError
from workers.context import StageContext, StageFailed
from workers.deploying import ensure_proxy, launch, serving_artifact, target_for
from workers.ml.evalset import load_evalset
from workers.ml.validate import match_inputs, validate_model
from workers.stages import llm

SMOKE_SAMPLES = 8
SAMPLE_EVERY_S = 5.0


def _start_checked(ctx: StageContext, environment: Environment) -> Instance:
    """Start the server, wait for its health check, then smoke-test it on evaluation samples."""
    ctx.progress(5, f"starting the model server in {environment.name}")
    try:
        ensure_proxy()
        instance = launch(ctx.release, environment)
    except (TargetError, ProxyError) as exc:
        raise StageFailed(str(exc)) from None
    ctx.log(f"{environment.name}: release #{ctx.release.pk} ready at {instance.url} "
            f"({instance.kind} {instance.handle})")
    ctx.progress(40, "smoke test on evaluation samples")
    result = _smoke(ctx, instance)
    if not result.passed:
        target_for(environment).stop(instance, timeout=5)
        raise StageFailed(f"smoke test in {environment.name}: " + "; ".join(result.failures[:5]))
    ctx.log(f"smoke test passed on {result.checked} samples")
    return instance


def _smoke(ctx: StageContext, instance: Instance) -> SmokeResult:
    if ctx.model.task == "language_model":
        prompts = [prompt for prompt, _ in llm.eval_data(ctx).prompts[:SMOKE_SAMPLES]]
        return smoke_test_language_model(instance.url, prompts, expected_release_id=str(ctx.release.pk))
    evalset = load_evalset(ctx.eval_data_path)
    signature = validate_model(get_store().local_path(serving_artifact(ctx.release).sha256), evalset)
    feeds = match_inputs(signature.inputs, evalset)
    rows = min(SMOKE_SAMPLES, evalset.num_samples)
    samples = [{name: array[i:i + 1] for name, array in feeds.items()} for i in range(rows)]
    return smoke_test(instance.url, ctx.release.version.model.name, samples,
                      expected_release_id=str(ctx.release.pk))


def _in_service(ctx: StageContext, environment: Environment) -> Deployment | None:
    """The release's deployment in `environment` that an earlier run of this stage put in service and
    that still runs: a retried stage (its worker died) goes on from there instead of deploying twice."""
    deployment = environment.deployments.filter(release=ctx.release, traffic_percent__gt=0).first()
    if deployment is None or not target_for(environment).is_alive(deploys.instance_of(deployment)):
        return None
    ctx.log(f"{environment.name}: release #{ctx.release.pk} already serves ({deployment.role}, "
            f"{deployment.traffic_percent}%, {deployment.endpoint}) since an earlier attempt; not started again")
    return deployment


def _serve(ctx: StageContext, environment: Environment, instance: Instance, canary_percent: int | None) -> None:
    try:
        with transaction.atomic():
            ctx.hold_claim()
            deploys.put_in_service(ctx.release.pk, environment.name, instance, canary_percent=canary_percent,
                                   actor=Actor.worker(), image=ctx.release.image_digest)
    except ProxyError as exc:
        raise StageFailed(f"the proxy refused the traffic change: {exc}") from None


def run_staging(ctx: StageContext) -> None:
    staging = Environment.objects.get(name="staging")
    if _in_service(ctx, staging) is None:
        _serve(ctx, staging, _start_checked(ctx, staging), canary_percent=None)


def _record(environment: Environment, release_id: int, before: Sample, after: Sample, seconds: float) -> None:
    stats = window(before, after)
    ServingSample.objects.create(
        environment=environment, release_id=release_id, at=timezone.now(), requests_per_s=stats.requests / seconds,
        error_rate=stats.error_rate, latency_p95_ms=None if stats.p95_seconds is None else stats.p95_seconds * 1000)


def run_canary(ctx: StageContext) -> None:
    production = Environment.objects.get(name="production")
    earlier = _in_service(ctx, production)
    if earlier is not None and earlier.role == Deployment.Role.ACTIVE:
        return
    refusal = canary_refusal(ctx.release, production.name)
    if refusal is not None:
        raise StageFailed(f"no canary for release #{ctx.release.pk}: {refusal}")
    stable = production.deployments.filter(role="active").first()
    policy = ctx.policy
    if earlier is not None:
        instance = deploys.instance_of(earlier)
    else:
        instance = _start_checked(ctx, production)
        if stable is None:
            ctx.log("nothing serves in production yet: the release takes all traffic, no canary to compare")
            _serve(ctx, production, instance, canary_percent=None)
            return
        _serve(ctx, production, instance, canary_percent=policy.canary_percent)
    assert stable is not None, "a canary runs beside the active release"
    stable_url = deploys.instance_of(stable).url
    first = {"stable": scrape(stable_url), "canary": scrape(instance.url)}
    last, last_at, started = dict(first), time.monotonic(), time.monotonic()
    duration = policy.canary_minutes * 60
    while (elapsed := time.monotonic() - started) < duration:
        time.sleep(min(SAMPLE_EVERY_S, max(duration - elapsed, 0.05)))
        now = {"stable": scrape(stable_url), "canary": scrape(instance.url)}
        seconds = time.monotonic() - last_at
        _record(production, stable.release_id, last["stable"], now["stable"], seconds)
        _record(production, ctx.release.pk, last["canary"], now["canary"], seconds)
        last, last_at = now, time.monotonic()
        ctx.progress(50 + 45 * min(elapsed / duration, 1), f"canary at {policy.canary_percent}%: watching")
    verdict = analyse(window(first["stable"], last["stable"]), window(first["canary"], last["canary"]),
                      Thresholds(max_error_rate_increase=policy.canary_max_error_rate_increase,
                                 max_p95_ratio=policy.canary_max_p95_ratio,
                                 min_requests=policy.canary_min_requests))
    ctx.log(f"canary analysis: {verdict.reason}")
    with transaction.atomic():
        ctx.hold_claim()
        deploys.end_canary("production", promote=verdict.passed, actor=Actor.worker(),
                           reason=f"canary analysis of release #{ctx.release.pk}: {verdict.reason}")
    if not verdict.passed:
        raise StageFailed(f"canary rolled back automatically: {verdict.reason}")
