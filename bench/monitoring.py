"""The cost of watching what serves: latency the monitoring path adds per request, and label ingest.

1. Two model servers of the demo digits model run as local processes (`python -m serving`), one
   with its monitoring profile (input bins, output ranges, prediction log) and one without. Batch-1
   requests alternate between them over keep-alive connections, so other load on the machine hits
   both alike; the median and mean latency of each and the added share are reported, and the
   in-process cost of one Watcher.observe() call.
2. The feedback API's ingest rate: --predictions collected predictions in a throwaway PostgreSQL
   database (`slipway_bench_monitoring`, dropped at the end), then all their labels posted through
   the whole Django stack (django.test.Client) in batches of --batch; labels per second.

    .venv/bin/python bench/monitoring.py [--requests 3000] [--predictions 50000] [--batch 5000]

Targets: at most 5% added latency at batch 1; at least 5,000 labels/s. The last line is the
figures as one JSON object.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import timeit
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.throwaway import clean_up, configure, drop_database, recreate_database, serving_pids

configure("slipway_bench_monitoring")

MAX_OVERHEAD = 0.05
MIN_LABELS_PER_S = 5000


def _servers(folder: Path) -> tuple[list, object]:
    from releases.management.demo_model import digits_model
    from serving.integrity import file_sha256
    from shipping.local_target import LocalTarget
    from shipping.ports import PortAllocator
    from shipping.targets import InstanceSpec
    from workers.ml.evalset import evalset_from_arrays
    from workers.ml.profile import write_profile

    m = digits_model()
    model = folder / "digits.onnx"
    model.write_bytes(m.onnx_bytes)
    profile = write_profile(model, evalset_from_arrays({"inputs": m.eval_inputs, "labels": m.eval_labels}),
                            "classification", folder / "profile.json")
    target, ports = LocalTarget(folder / "logs", pid_dir=serving_pids()), PortAllocator()
    specs = [InstanceSpec(release_id=name, environment="bench", port=ports.allocate(), model_name="digits",
                          version="1", sha256=file_sha256(model), model_path=model, profile_path=path)
             for name, path in (("without", None), ("with", profile))]
    return [target.launch(spec, timeout=60) for spec in specs], target


def latency(requests_each: int) -> dict[str, float]:
    from releases.management.demo_model import digits_model
    from serving import oip
    from serving.watch import Profile, Watcher

    rows = digits_model().eval_inputs
    with tempfile.TemporaryDirectory() as folder:
        instances, target = _servers(Path(folder))
        try:
            sessions = [requests.Session() for _ in instances]
            seconds: dict[str, list[float]] = {i.release_id: [] for i in instances}
            for n in range(requests_each + 200):  # the first 200 rounds warm up
                body = oip.request_document({"pixels": rows[n % len(rows):][:1].astype("float32")})
                for instance, session in sorted(zip(instances, sessions, strict=True),
                                                key=lambda pair: (n + (pair[0].release_id == "with")) % 2):
                    started = time.perf_counter()
                    answer = session.post(instance.url + oip.infer_path("digits"), json=body, timeout=5)
                    took = time.perf_counter() - started
                    answer.raise_for_status()
                    if n >= 200:
                        seconds[instance.release_id].append(took)
            report = sessions[1].get(f"{instances[1].url}/v1/monitoring", params={"after": 10**9}, timeout=5).json()
            assert report["rows"] == requests_each + 200, report["rows"]
            profile = Profile.load(Path(folder) / "profile.json")
        finally:
            for instance in instances:
                target.stop(instance, timeout=10)
    watcher = Watcher(profile)
    x = {"pixels": rows[:1]}
    y = {"probabilities": np.full((1, 10), 0.1, dtype=np.float32)}
    observe_us = min(timeit.repeat(lambda: watcher.observe("id", x, y, 1), number=2000, repeat=5)) / 2000 * 1e6
    without, with_ = (statistics.median(seconds[k]) * 1000 for k in ("without", "with"))
    mean_without, mean_with = (statistics.fmean(seconds[k]) * 1000 for k in ("without", "with"))
    return {"p50_ms_without": round(without, 4), "p50_ms_with": round(with_, 4),
            "mean_ms_without": round(mean_without, 4), "mean_ms_with": round(mean_with, 4),
            "added_p50": round((with_ - without) / without, 4),
            "added_mean": round((mean_with - mean_without) / mean_without, 4),
            "observe_us": round(observe_us, 2)}


def ingest(predictions: int, batch: int) -> dict[str, float]:
    import django

    recreate_database()
    try:
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return _ingest(predictions, batch)
    finally:
        drop_database()


def _ingest(predictions: int, batch: int) -> dict[str, float]:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from monitoring.models import Label, Prediction
    from releases.models import ApiToken, Artifact, Environment, Model, ModelVersion, Release, ReleasePolicy

    user = User.objects.create_user("labeller")
    user.groups.add(Group.objects.get(name="deployer"))
    _, raw = ApiToken.issue(user, "bench", ["feedback"])
    model = Model.objects.create(name="digits", task="classification")
    ReleasePolicy.objects.create(model=model)
    artifact = Artifact.objects.create(kind="original", sha256="0" * 64, size_bytes=1)
    version = ModelVersion.objects.create(model=model, label="1", artifact=artifact, eval_data=artifact,
                                          author=user, git_commit="0" * 40)
    release = Release.objects.create(version=version)
    environment = Environment.objects.get(name="production")
    at = datetime.now(UTC)
    Prediction.objects.bulk_create([Prediction(prediction_id=f"bench-{i:08d}", environment=environment,
                                               release=release, at=at, value=float(i % 10))
                                    for i in range(predictions)], batch_size=5000)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    accepted = 0
    started = time.perf_counter()
    for first in range(0, predictions, batch):
        body = [{"prediction_id": f"bench-{i:08d}", "label": i % 7} for i in range(first, min(first + batch,
                                                                                               predictions))]
        answer = client.post("/api/v1/feedback/", json.dumps(body), content_type="application/json")
        accepted += answer.json()["accepted"]
    took = time.perf_counter() - started
    assert accepted == predictions == Label.objects.count(), (accepted, Label.objects.count())
    return {"labels": accepted, "batch": batch, "ingest_s": round(took, 3), "labels_per_s": round(accepted / took)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="batch-1 requests to each server")
    parser.add_argument("--predictions", type=int, default=50000, help="predictions to label")
    parser.add_argument("--batch", type=int, default=5000, help="labels per feedback request")
    args = parser.parse_args()
    try:
        figures = latency(args.requests) | ingest(args.predictions, args.batch)
    finally:
        clean_up()
    figures["load_average_1m"] = round(os.getloadavg()[0], 2)
    figures["meets_targets"] = figures["added_p50"] <= MAX_OVERHEAD and figures["labels_per_s"] >= MIN_LABELS_PER_S
    print(f"latency at batch 1, median: {figures['p50_ms_without']:.3f} ms without monitoring, "
          f"{figures['p50_ms_with']:.3f} ms with it ({figures['added_p50']:+.1%}; mean {figures['added_mean']:+.1%}); "
          f"Watcher.observe {figures['observe_us']:.1f} µs")
    print(f"feedback ingest: {figures['labels']} labels in batches of {figures['batch']}: "
          f"{figures['labels_per_s']} labels/s (load average {figures['load_average_1m']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
