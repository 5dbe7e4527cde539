"""Rollback under load: how fast traffic goes back to the previous release, and what fails meanwhile.

A steady load (100 requests/s over keep-alive connections, on loopback) runs against an
environment's stable HAProxy endpoint while release B is deployed next to A (started, health
checked), given 10% as a canary (with the canary analysis of that window), promoted to 100%,
then rolled back to A. Traffic moves the way Slipway moves it: deploy, canary and promotion
through releases.deploys, and the rollback as an on-call engineer's call of the REST API
(POST /api/v1/environments/production/rollback/ with a token, through the whole Django stack),
with the records in a throwaway PostgreSQL database (bench/throwaway.py). It prints the time
from the API call until every request is served by A (by X-Release-Id), the failed requests of
each phase, and the time to rebuild a release image for a new 100 MB model with the base and
dependency images cached.
The last line is one JSON object with the figures.

    .venv/bin/python bench/rollback.py [--target docker] [--rate 100] [--model-mb 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import clean_up, configure, drop_database, recreate_database, serving_pids

SCRATCH = configure("slipway_bench_rollback")

import django
import docker
from docker.errors import DockerException

from serving import oip
from serving.integrity import file_sha256
from shipping import canary, proxy
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec, Target
from tests.serving.onnx_models import linear_model
from tests.shipping.load import SteadyLoad

ENVIRONMENT = "production"


def docker_client():
    client = docker.from_env()
    client.ping()
    return client


def build_image(client, folder: Path, release_id: str, megabytes: int, seed: int):
    from shipping.base_image import LOCAL_BASE_IMAGE, build_local_base_image
    from shipping.image import ReleaseImageSpec, build_release_image

    build_local_base_image(client)
    model = linear_model(folder / f"{release_id}.onnx", padding_megabytes=megabytes, seed=seed)
    spec = ReleaseImageSpec(
        release_id=release_id,
        model_name="bench",
        version=release_id,
        model_path=model,
        sha256=file_sha256(model),
        base_image=LOCAL_BASE_IMAGE,
    )
    return build_release_image(client, spec)


def make_target(kind: str, folder: Path) -> Target:
    if kind == "docker":
        from shipping.docker_target import DockerTarget

        return DockerTarget(docker_client())
    from shipping.local_target import LocalTarget

    return LocalTarget(log_dir=folder / "logs", pid_dir=serving_pids())


def spec_for(kind: str, release_id: str, port: int, folder: Path, client) -> InstanceSpec:
    if kind == "docker":
        image = build_image(client, folder, release_id, megabytes=0, seed=int(release_id))
        return InstanceSpec(release_id, ENVIRONMENT, port, image=image.tag)
    model = linear_model(folder / f"{release_id}.onnx")
    return InstanceSpec(
        release_id,
        ENVIRONMENT,
        port,
        model_name="bench",
        version=release_id,
        model_path=model,
        sha256=file_sha256(model),
    )


class Phases:
    """Named, back-to-back spans of time (perf_counter), to count failures per phase."""

    def __init__(self) -> None:
        self.spans: dict[str, tuple[float, float]] = {}
        self._mark = time.perf_counter()

    def start(self) -> None:
        self._mark = time.perf_counter()

    def end(self, name: str) -> None:
        now = time.perf_counter()
        self.spans[name] = (self._mark, now)
        self._mark = now


def rollback_seconds(load: SteadyLoad, started: float, call_seconds: float, release: str) -> float | None:
    """From the rollback call until the first request after which every request was served by ``release``."""
    after = sorted(load.sent_after(started), key=lambda outcome: outcome.sent)
    first_all = None
    for outcome in reversed(after):
        if outcome.release != release:
            break
        first_all = outcome.sent
    return None if first_all is None else round(max(call_seconds, first_all - started), 4)


class Slipway:
    """Slipway's own records on the throwaway database: one model, releases A and B, an on-call token."""

    def __init__(self, proxy_port: int, kind: str) -> None:
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command

        from releases.models import ApiToken, Artifact, Environment, Model, ModelVersion, Release, ReleasePolicy

        call_command("migrate", verbosity=0)
        Environment.objects.filter(name="staging").update(proxy_port=proxy_port + 1)
        Environment.objects.filter(name=ENVIRONMENT).update(proxy_port=proxy_port, target=kind)
        user = User.objects.create_user("bench-oncall")
        user.groups.add(Group.objects.get(name="on-call"))
        self.token = ApiToken.issue(user, "bench", ["rollback", "releases:read"])[1]
        model = Model.objects.create(name="bench", task="regression")
        ReleasePolicy.objects.create(model=model)
        artifact = Artifact.objects.create(sha256="0" * 64, size_bytes=0, kind="original", file_format="onnx")
        self.releases = [
            Release.objects.create(status="released", version=ModelVersion.objects.create(
                model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact, author=user))
            for label in ("A", "B")
        ]

    def serve(self, release_index: int, instance: Instance, canary_percent: int | None) -> None:
        from releases import deploys
        from releases.actors import Actor

        deploys.put_in_service(self.releases[release_index].pk, ENVIRONMENT, instance,
                               canary_percent=canary_percent, actor=Actor.system("bench"))

    def promote(self) -> None:
        from releases import deploys
        from releases.actors import Actor

        deploys.end_canary(ENVIRONMENT, promote=True, actor=Actor.system("bench"), reason="bench")

    def rollback_call(self) -> int:
        from django.test import Client

        answer = Client().post(f"/api/v1/environments/{ENVIRONMENT}/rollback/",
                               {"reason": "bench", "expected_release": self.releases[1].pk},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.token}")
        return answer.status_code

    def warm_up(self) -> None:
        """A web process that has served requests before: its URLs, views and database connection loaded
        (the first request of a fresh process spends ~0.25 s importing them)."""
        from django.test import Client

        answer = Client().get(f"/api/v1/environments/{ENVIRONMENT}/", HTTP_AUTHORIZATION=f"Bearer {self.token}")
        assert answer.status_code == 200, answer.content


def run_traffic(kind: str, rate: float, clients: int, hold: float, folder: Path) -> dict:
    from django.conf import settings

    ports = PortAllocator()
    client = docker_client() if kind == "docker" else None
    target = make_target(kind, folder)
    config = proxy.ProxyConfig(state_dir=settings.SLIPWAY_PROXY_DIR, environments={ENVIRONMENT: ports.allocate()})
    proxy.ensure_running(config)
    slipway = Slipway(config.environments[ENVIRONMENT], kind)
    id_a, id_b = (str(r.pk) for r in slipway.releases)
    spec_a = spec_for(kind, id_a, ports.allocate(), folder, client)
    spec_b = spec_for(kind, id_b, ports.allocate(), folder, client)
    instances: list[Instance] = []
    phases = Phases()
    try:
        a = target.launch(spec_a)
        instances.append(a)
        slipway.serve(0, a, canary_percent=None)
        with SteadyLoad(config.endpoint(ENVIRONMENT) + oip.infer_path("bench"), rate=rate, clients=clients) as load:
            phases.start()
            time.sleep(hold)
            phases.end("steady")
            b = target.launch(spec_b)
            instances.append(b)
            phases.end("deploy")
            before = canary.scrape(a.url), canary.scrape(b.url)
            slipway.serve(1, b, canary_percent=10)
            time.sleep(hold)
            after = canary.scrape(a.url), canary.scrape(b.url)
            verdict = canary.analyse(
                canary.window(before[0], after[0]),
                canary.window(before[1], after[1]),
                canary.Thresholds(min_requests=int(rate * hold * 0.05)),
            )
            phases.end("canary")
            slipway.warm_up()
            promote_call = time.perf_counter()
            slipway.promote()
            promote_seconds = time.perf_counter() - promote_call
            time.sleep(hold)
            phases.end("promote")
            rollback_call = time.perf_counter()
            status = slipway.rollback_call()
            call_seconds = time.perf_counter() - rollback_call
            time.sleep(hold)
            phases.end("rollback")
    finally:
        for instance in instances:
            proxy.detach(config, ENVIRONMENT, instance)
            target.stop(instance, timeout=10)
        proxy.stop(config)
        if client is not None:
            for spec in (spec_a, spec_b):
                client.images.remove(spec.image, force=True)
    failed = {
        name: sum(1 for o in load.failures if start <= o.sent < end) for name, (start, end) in phases.spans.items()
    }
    return {
        "target": kind,
        "requests": len(load.outcomes),
        "achieved_rate": round(len(load.outcomes) / (phases.spans["rollback"][1] - phases.spans["steady"][0]), 1),
        "failed_requests": len(load.failures),
        "failed_by_phase": failed,
        "rollback_api_status": status,
        "rollback_seconds": rollback_seconds(load, rollback_call, call_seconds, id_a),
        "rollback_call_seconds": round(call_seconds, 4),
        "promote_call_seconds": round(promote_seconds, 4),
        "canary_verdict": {"passed": verdict.passed, "reason": verdict.reason},
    }


def rebuild_seconds(megabytes: int, folder: Path) -> dict:
    """Build a release image for a new model of ``megabytes`` MB, base and dependencies cached."""
    try:
        client = docker_client()
    except DockerException as error:
        return {"image_rebuild_seconds": None, "image_rebuild_skipped": f"Docker Engine not reachable: {error}"}
    warm = build_image(client, folder, "warm", megabytes=1, seed=1)  # base, deps and code layers cached
    built = build_image(client, folder, f"{megabytes}mb", megabytes=megabytes, seed=int(time.time()))
    for image in (warm, built):
        client.images.remove(image.tag, force=True)
    return {
        "image_rebuild_seconds": round(built.seconds, 2),
        "image_model_mb": megabytes,
        "image_size_mb": round(built.size_bytes / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["local", "docker"], default="local")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, in all")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive client connections")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds spent in each phase")
    parser.add_argument("--model-mb", type=int, default=100, help="model size for the image rebuild")
    parser.add_argument("--skip-image", action="store_true", help="do not measure the image rebuild")
    args = parser.parse_args()
    recreate_database()
    django.setup()
    try:
        with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
            folder = Path(scratch)
            figures = run_traffic(args.target, args.rate, args.clients, args.hold, folder)
            if not args.skip_image:
                figures |= rebuild_seconds(args.model_mb, folder)
    finally:
        clean_up()
        drop_database()
    rollback = figures["rollback_seconds"]
    print(f"target: {figures['target']}; {figures['requests']} requests at {figures['achieved_rate']}/s")
    print(
        f"rollback (API answered {figures['rollback_api_status']}): every request served by A "
        f"{rollback * 1000:.1f} ms after the API call"
        if rollback is not None
        else "rollback: requests were still not all served by A at the end"
    )
    print(
        f"calls: rollback API {figures['rollback_call_seconds'] * 1000:.1f} ms, "
        f"promote {figures['promote_call_seconds'] * 1000:.1f} ms"
    )
    print(f"failed requests: {figures['failed_requests']} ({figures['failed_by_phase']})")
    print(f"canary analysis: {figures['canary_verdict']}")
    if figures.get("image_rebuild_seconds") is not None:
        print(f"image rebuild for a new {figures['image_model_mb']} MB model: {figures['image_rebuild_seconds']} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
