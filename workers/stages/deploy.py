"""deploy_staging and canary: start the release's server, check it, and give its model's traffic to it.

Staging takes the release whole after a smoke test. Production takes it as a canary at the
policy's share of its model's traffic; the stage then ends and waits, and short scheduled checks
(releases/canaries.py) watch the window and promote it or take it out with the measured values as
the reason. Each model has its own service: no other model's traffic moves.
"""

from django.db import transaction

from monitoring.shadowing import canary_gate
from releases import canaries, deploys, routing
from releases.actors import Actor
from releases.candidates import serving_artifact
from releases.models import Deployment, Environment
from releases.statemachine import TransitionError
from releases.storage import get_store
from shipping.llm_smoke import smoke_test_language_model
from shipping.proxy import ProxyError
from shipping.smoke import SmokeResult, smoke_test
from shipping.targets import Instance, TargetError
from workers.context import SHADOW, WATCH, StageContext, StageFailed
from workers.deploying import launch
from workers.ml.evalset import load_evalset
from workers.ml.validate import match_inputs, validate_model
from workers.stages import llm

SMOKE_SAMPLES = 8


def _start_checked(ctx: StageContext, environment: Environment) -> Instance:
    """Start the server, wait for its health check, then smoke-test it on evaluation samples."""
    ctx.progress(5, f"starting the model server in {environment.name}")
    try:
        routing.ensure_proxy()
        instance = launch(ctx.release, environment)
    except (TargetError, ProxyError) as exc:
        raise StageFailed(str(exc)) from None
    ctx.log(f"{environment.name}: release #{ctx.release.pk} ready at {instance.url} "
            f"({instance.kind} {instance.handle})")
    ctx.progress(40, "smoke test on evaluation samples")
    result = _smoke(ctx, instance)
    if not result.passed:
        routing.target_for(environment).stop(instance, timeout=5)
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
    deployment = Deployment.objects.filter(service__environment=environment, release=ctx.release,
                                           traffic_percent__gt=0).first()
    if deployment is None or not routing.target_for(environment).is_alive(routing.instance_of(deployment)):
        return None
    ctx.log(f"{environment.name}: release #{ctx.release.pk} already serves ({deployment.role}, "
            f"{deployment.traffic_percent}%, {deployment.endpoint}) since an earlier attempt; not started again")
    return deployment


def _serve(ctx: StageContext, environment: Environment, instance: Instance, canary_percent: int | None) -> None:
    try:
        with transaction.atomic():
            ctx.hold_claim()
            deployment = deploys.put_in_service(ctx.release.pk, environment.name, instance,
                                                canary_percent=canary_percent, actor=Actor.worker(),
                                                image=ctx.release.image_digest)
            if deployment.role == Deployment.Role.CANARY:
                canaries.open_canary(deployment, ctx.stage)
    except ProxyError as exc:
        raise StageFailed(f"the proxy refused the traffic change: {exc}") from None
    except TransitionError as exc:
        raise StageFailed(str(exc)) from None


def run_staging(ctx: StageContext) -> None:
    staging = Environment.objects.get(name="staging")
    if _in_service(ctx, staging) is None:
        _serve(ctx, staging, _start_checked(ctx, staging), canary_percent=None)


def run_canary(ctx: StageContext) -> str | None:
    """Put the release in service as a canary of its model in production and leave it to the scheduled
    analysis (the stage waits); the first release of a model takes all of its traffic at once."""
    production = Environment.objects.get(name="production")
    earlier = _in_service(ctx, production)
    if earlier is not None:
        if earlier.role == Deployment.Role.ACTIVE:
            return None
        if not hasattr(earlier, "canary_run"):
            canaries.open_canary(earlier, ctx.stage)
        return WATCH
    stable = Deployment.objects.filter(service__environment=production, role=Deployment.Role.ACTIVE,
                                       release__version__model=ctx.model).first()
    if stable is not None:  # the first release of a model has nothing to be shadowed beside
        gate = canary_gate(ctx.release, production.name)
        if gate.decision == "refuse":
            raise StageFailed(f"no canary for release #{ctx.release.pk}: {gate.reason}")
        if gate.decision == "wait":
            ctx.log(f"the canary waits: {gate.reason}; the monitoring beat sends it on once the verdict is reached")
            return SHADOW
        if gate.reason:
            ctx.log(gate.reason)
    instance = _start_checked(ctx, production)
    if stable is None:
        ctx.log(f"nothing serves {ctx.model.name} in production yet: the release takes all of its traffic, "
                "no canary to compare")
        _serve(ctx, production, instance, canary_percent=None)
        return None
    _serve(ctx, production, instance, canary_percent=ctx.policy.canary_percent)
    ctx.log(f"canary at {ctx.policy.canary_percent}% of {ctx.model.name}'s production traffic for "
            f"{ctx.policy.canary_minutes:g} min; short scheduled checks watch it")
    return WATCH
