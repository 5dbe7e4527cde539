"""Rollback of one model of three under load: how fast its traffic goes back, and that nothing else moves.

Three models serve side by side in production behind the environment's one HAProxy, each at its own path
(/v2/models/<model>/...), each under its own steady load (100 requests/s by default, over keep-alive
connections, on loopback) from a process of its own: the process that calls the API is not the one that
loads, so the figure is Slipway's, not the load clients' fight for the GIL. Each model's release B is
deployed next to A (started, health checked, all traffic; A stays warm), through releases.deploys as the
deploy stage does. Then an on-call engineer rolls the middle model back through the REST API (POST
/api/v1/environments/production/models/<model>/rollback/ with a token, through the whole Django stack,
which checks A's server ready first), with the records in a throwaway PostgreSQL database
(bench/throwaway.py). It prints the time from the API call until every request of that model is served
by its A (by X-Release-Id) and when the last request not served by A was sent (the move lies between the
two), the time in the web process from the call until HAProxy answered the weight change and the
process's CPU time over it (which the machine's load disturbs less), the failed requests of each model
and phase, which releases the other two models served after the rollback (B only, untouched), the load
average, then a rollback drill of the first model through the API (back to A and forward to B, the times
as Slipway records them: from the call until HAProxy applied each move), and the time to rebuild a
release image for a new 100 MB model with the base and dependency images cached.
The last line is one JSON object with the figures.

    .venv/bin/python bench/rollback.py [--target docker] [--rate 100] [--models 3] [--model-mb 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import clean_up, configure, drop_database, recreate_database, serving_pids

SCRATCH = configure("slipway_bench_rollback")

import django
import docker
from docker.errors import DockerException

from serving import oip
from serving.integrity import file_sha256
from shipping import proxy
from shipping.ports import PortAllocator
from shipping.targets import Instance, InstanceSpec, Target
from tests.serving.onnx_models import linear_model
from tests.shipping.load import LoadProcess, Outcomes

ENVIRONMENT = "production"


def docker_client():
    client = docker.from_env()
    client.ping()
    return client


def build_image(client, folder: Path, release_id: str, megabytes: int, seed: int, model_name: str = "bench"):
    from shipping.base_image import LOCAL_BASE_IMAGE, build_local_base_image
    from shipping.image import ReleaseImageSpec, build_release_image

    build_local_base_image(client)
    model = linear_model(folder / f"{release_id}.onnx", padding_megabytes=megabytes, seed=seed)
    spec = ReleaseImageSpec(
        release_id=release_id,
        model_name=model_name,
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


def spec_for(kind: str, model_name: str, release_id: str, port: int, folder: Path, client) -> InstanceSpec:
    if kind == "docker":
        image = build_image(client, folder, release_id, megabytes=0, seed=int(release_id), model_name=model_name)
        return InstanceSpec(release_id, ENVIRONMENT, port, model_name=model_name, image=image.tag)
    model = linear_model(folder / f"{release_id}.onnx")
    return InstanceSpec(
        release_id,
        ENVIRONMENT,
        port,
        model_name=model_name,
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


def last_elsewhere_seconds(load: Outcomes, started: float, release: str) -> float | None:
    """From the rollback call until the last request sent that was not served by ``release``: with
    rollback_seconds, the bracket the move lies in (the load sends a request of the model every
    1/rate s, so each figure alone is only that fine)."""
    sent = [outcome.sent for outcome in load.sent_after(started) if outcome.release != release]
    return round(max(sent) - started, 4) if sent else None


@contextmanager
def weight_changes() -> Iterator[list[tuple[float, float]]]:
    """While inside, the moments HAProxy answered a command that set weights (perf_counter) and the
    calling thread's CPU time then (thread_time): the in-process figure, which the machine's load
    disturbs less than the clients' view. It only watches shipping.proxy.command; nothing changes."""
    answered: list[tuple[float, float]] = []
    send = proxy.command

    def watched(config: proxy.ProxyConfig, line: str, timeout: float = 5.0) -> str:
        answer = send(config, line, timeout)
        if " weight " in line:
            answered.append((time.perf_counter(), time.thread_time()))
        return answer

    proxy.command = watched
    try:
        yield answered
    finally:
        proxy.command = send


def rollback_seconds(load: Outcomes, started: float, release: str) -> float | None:
    """From the rollback call until the first request after which every request was served by ``release``
    (the proxy moves traffic in the middle of the call; the call then records it and answers)."""
    after = sorted(load.sent_after(started), key=lambda outcome: outcome.sent)
    first_all = None
    for outcome in reversed(after):
        if outcome.release != release:
            break
        first_all = outcome.sent
    return None if first_all is None else round(first_all - started, 4)


class Slipway:
    """Slipway's own records on the throwaway database: models with releases A and B, an on-call token."""

    def __init__(self, proxy_port: int, kind: str, models: list[str]) -> None:
        from django.contrib.auth.models import Group, User
        from django.core.management import call_command

        from releases.models import ApiToken, Artifact, Environment, Model, ModelVersion, Release, ReleasePolicy

        call_command("migrate", verbosity=0)
        Environment.objects.filter(name="staging").update(proxy_port=proxy_port + 1)
        Environment.objects.filter(name=ENVIRONMENT).update(proxy_port=proxy_port, target=kind)
        user = User.objects.create_user("bench-oncall")
        user.groups.add(Group.objects.get(name="on-call"))
        self.token = ApiToken.issue(user, "bench", ["rollback", "releases:read"])[1]
        artifact = Artifact.objects.create(sha256="0" * 64, size_bytes=0, kind="original", file_format="onnx")
        self.releases: dict[str, list] = {}
        for name in models:
            model = Model.objects.create(name=name, task="regression")
            ReleasePolicy.objects.create(model=model)
            self.releases[name] = [
                Release.objects.create(status="released", version=ModelVersion.objects.create(
                    model=model, label=label, git_commit="0" * 7, artifact=artifact, eval_data=artifact,
                    author=user))
                for label in ("A", "B")]

    def serve(self, model: str, release_index: int, instance: Instance) -> None:
        from releases import deploys
        from releases.actors import Actor

        deploys.put_in_service(self.releases[model][release_index].pk, ENVIRONMENT, instance,
                               canary_percent=None, actor=Actor.system("bench"))

    def rollback_call(self, model: str) -> int:
        from django.test import Client

        answer = Client().post(f"/api/v1/environments/{ENVIRONMENT}/models/{model}/rollback/",
                               {"reason": "bench", "expected_release": self.releases[model][1].pk},
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.token}")
        return answer.status_code

    def drill_call(self, model: str) -> dict:
        """A rollback drill of the model through the API: the times the product measures itself."""
        from django.test import Client

        answer = Client().post(f"/api/v1/environments/{ENVIRONMENT}/models/{model}/drill/",
                               HTTP_AUTHORIZATION=f"Bearer {self.token}")
        assert answer.status_code == 201, answer.content
        return answer.json()

    def warm_up(self, model: str) -> None:
        """A web process that has served requests before: its URLs, views and database connection loaded
        (the first request of a fresh process spends ~0.25 s importing them, and the first one to reach
        a URL pattern compiles it), and what sending a task needs loaded, as slipway/wsgi.py does when a
        web process starts. The rollback's own URL answers a GET with 405, moving nothing."""
        from django.test import Client

        from slipway.celery import load_sending

        load_sending()

        client = Client(HTTP_AUTHORIZATION=f"Bearer {self.token}")
        answer = client.get(f"/api/v1/environments/{ENVIRONMENT}/")
        assert answer.status_code == 200, answer.content
        answer = client.get(f"/api/v1/environments/{ENVIRONMENT}/models/{model}/rollback/")
        assert answer.status_code == 405, answer.content


def run_traffic(kind: str, rate: float, clients: int, hold: float, folder: Path, count: int) -> dict:
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from django.conf import settings

    ports = PortAllocator()
    client = docker_client() if kind == "docker" else None
    target = make_target(kind, folder)
    config = proxy.ProxyConfig(state_dir=settings.SLIPWAY_PROXY_DIR, environments={ENVIRONMENT: ports.allocate()})
    proxy.ensure_running(config)
    models = [f"model-{n}" for n in range(1, count + 1)]
    rolled = models[len(models) // 2]
    slipway = Slipway(config.environments[ENVIRONMENT], kind, models)
    ids = {m: [str(r.pk) for r in slipway.releases[m]] for m in models}
    specs = [spec_for(kind, m, ids[m][i], ports.allocate(), folder, client) for m in models for i in (0, 1)]
    instances: dict[str, Instance] = {}
    phases = Phases()
    loads: dict[str, LoadProcess] = {}
    try:
        with ThreadPoolExecutor() as pool:
            for spec, instance in zip(specs, pool.map(target.launch, specs), strict=True):
                instances[spec.release_id] = instance
        for m in models:
            slipway.serve(m, 0, instances[ids[m][0]])
        with ExitStack() as stack:
            for m in models:
                loads[m] = stack.enter_context(LoadProcess(config.endpoint(ENVIRONMENT) + oip.infer_path(m),
                                                           rate=rate, clients=clients))
            phases.start()
            time.sleep(hold)
            phases.end("steady")
            for m in models:  # B takes each model's traffic; A stays warm
                slipway.serve(m, 1, instances[ids[m][1]])
            time.sleep(hold)
            phases.end("deploy")
            slipway.warm_up(rolled)
            load_average = os.getloadavg()
            with weight_changes() as moves:
                cpu_at_call, rollback_call = time.thread_time(), time.perf_counter()
                status = slipway.rollback_call(rolled)
                call_seconds = time.perf_counter() - rollback_call
            time.sleep(hold)
            phases.end("rollback")
            drilled = models[0]
            drill = slipway.drill_call(drilled)
            time.sleep(hold)
            phases.end("drill")
    finally:
        for instance in instances.values():
            target.stop(instance, timeout=10)
        proxy.stop(config)
        if client is not None:
            for spec in specs:
                client.images.remove(spec.image, force=True)
    start, end = phases.spans["steady"][0], phases.spans["drill"][1]
    return {
        "target": kind,
        "models": models,
        "rolled_back": rolled,
        "rate_per_model": rate,
        "requests": {m: len(loads[m].outcomes) for m in models},
        "achieved_rate": {m: round(len(loads[m].outcomes) / (end - start), 1) for m in models},
        "failed_requests": {m: len(loads[m].failures) for m in models},
        "failed_by_phase": {m: {name: sum(1 for o in loads[m].failures if s <= o.sent < e)
                                for name, (s, e) in phases.spans.items()} for m in models},
        "rollback_api_status": status,
        "rollback_seconds": rollback_seconds(loads[rolled], rollback_call, ids[rolled][0]),
        "rollback_last_elsewhere_seconds": last_elsewhere_seconds(loads[rolled], rollback_call, ids[rolled][0]),
        "rollback_in_process_seconds": round(moves[-1][0] - rollback_call, 4) if moves else None,
        "rollback_cpu_seconds": round(moves[-1][1] - cpu_at_call, 4) if moves else None,
        "rollback_call_seconds": round(call_seconds, 4),
        "served_after_rollback": {m: sorted({("A" if o.release == ids[m][0] else "B" if o.release == ids[m][1]
                                              else str(o.release)) for o in loads[m].sent_after(rollback_call)
                                              if o.sent < phases.spans["rollback"][1]}) for m in models},
        "load_average_at_rollback": [round(x, 2) for x in load_average],
        "drill": {"model": drilled, **{k: drill[k] for k in ("result", "back_ms", "forward_ms", "reason")}},
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
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, per model")
    parser.add_argument("--clients", type=int, default=4, help="keep-alive client connections per model")
    parser.add_argument("--models", type=int, default=3, help="models served side by side")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds spent in each phase")
    parser.add_argument("--model-mb", type=int, default=100, help="model size for the image rebuild")
    parser.add_argument("--skip-image", action="store_true", help="do not measure the image rebuild")
    args = parser.parse_args()
    recreate_database()
    django.setup()
    from slipway.celery import app

    # After the commit, a rollback queues the stop of the release it left; no worker runs here, so an
    # in-memory broker takes the message (with none at all, the answer would wait out the broker's retries).
    app.conf.broker_url = "memory://"
    try:
        with tempfile.TemporaryDirectory(prefix="slipway-bench-") as scratch:
            folder = Path(scratch)
            figures = run_traffic(args.target, args.rate, args.clients, args.hold, folder, args.models)
            if not args.skip_image:
                figures |= rebuild_seconds(args.model_mb, folder)
    finally:
        clean_up()
        drop_database()
    rollback = figures["rollback_seconds"]
    print(f"target: {figures['target']}; {len(figures['models'])} models, requests {figures['requests']} "
          f"at {figures['achieved_rate']}/s each; load average {figures['load_average_at_rollback']}")
    print(
        f"rollback of {figures['rolled_back']} (API answered {figures['rollback_api_status']}): every request of "
        f"it served by A {rollback * 1000:.1f} ms after the API call (goal <= 50 ms)"
        if rollback is not None
        else "rollback: requests were still not all served by A at the end"
    )
    elsewhere = figures["rollback_last_elsewhere_seconds"]
    if elsewhere is not None:
        print(f"  the last request of it not served by A was sent {elsewhere * 1000:.1f} ms after the call "
              f"(a request every {1000 / figures['rate_per_model']:.0f} ms)")
    if figures["rollback_in_process_seconds"] is not None:
        print(f"  in the web process: HAProxy applied the move {figures['rollback_in_process_seconds'] * 1000:.1f} ms "
              f"after the call, {figures['rollback_cpu_seconds'] * 1000:.1f} ms of it the process's CPU")
    print(f"rollback API call until its answer {figures['rollback_call_seconds'] * 1000:.1f} ms "
          f"(the move happens inside it; the answer follows once it is recorded)")
    print(f"served after the rollback: {figures['served_after_rollback']}")
    drill = figures["drill"]
    print(f"rollback drill of {drill['model']} ({drill['result']}{': ' + drill['reason'] if drill['reason'] else ''}), "
          f"as Slipway measures it: back to A in {drill['back_ms']} ms (call to HAProxy applying it), "
          f"forward to B in {drill['forward_ms']} ms")
    print(f"failed requests: {figures['failed_requests']} ({figures['failed_by_phase']})")
    if figures.get("image_rebuild_seconds") is not None:
        print(f"image rebuild for a new {figures['image_model_mb']} MB model: {figures['image_rebuild_seconds']} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
