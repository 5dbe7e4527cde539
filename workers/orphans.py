"""Stopping model servers that no record references: what a worker killed in the middle of a launch (the
stage time limit, the OOM killer, a kill) left running after its server started and before a Deployment or
a ShadowRun recorded it. Nothing else would ever stop such a server: it would hold its port and its memory
for good.

A server is referenced while a deployment's record holds it and no worker confirmed it stopped (it serves,
is kept warm, or is owed a stop: the sweeper's `resend_stops` sees to those, not this), or while a running
shadow run's record holds it. A launch in progress has not recorded its server yet, and no launch outlives
the stage time limit (`releases.sweeper.over_time_limit`: a task is killed then, and a launch's own waits are
far shorter), so only servers started longer ago than that are taken for orphans.

Each target lists the servers it started itself (shipping.targets.Target.started): a local target its pid
folder's registrations, a Docker target the containers labelled with this installation as their owner.
Beat has a deploy worker, where the servers run, call `reap` every SLIPWAY_SWEEP_EVERY_S seconds.
"""

import logging
import time
from itertools import chain

from monitoring.models import ShadowRun
from releases.models import Deployment, Environment
from releases.routing import target_for
from releases.sweeper import over_time_limit
from shipping.targets import Started

log = logging.getLogger(__name__)
STOP_TIMEOUT_S = 10.0


def referenced(kind: str) -> set[str]:
    """The handles (pids, container ids) of the `kind` servers that a record holds."""
    held = chain(Deployment.objects.filter(stopped_at=None).values_list("instance", flat=True),
                 ShadowRun.objects.filter(stopped_at=None).values_list("instance", flat=True))
    return {instance["handle"] for instance in held if instance.get("kind") == kind and "handle" in instance}


def orphans(started: list[Started], held: set[str], now: float) -> list[Started]:
    """Of the servers started, those that no record holds and that are older than any launch in progress."""
    oldest_launch = over_time_limit().total_seconds()
    return [s for s in started if s.instance.handle not in held and now - s.at > oldest_launch]


def reap() -> dict[str, int]:
    """Stop the orphaned servers of every target the environments use; each one stopped is logged."""
    stopped = 0
    for environment in {e.target: e for e in Environment.objects.all()}.values():
        try:
            target = target_for(environment)
            started = target.started()  # listed before the records are read
            now = time.time()
            for orphan in orphans(started, referenced(target.kind), now):
                instance = orphan.instance
                log.warning("stopping %s model server %s of release %s (%s, port %s), started %.0f s ago: no "
                            "deployment or shadow run refers to it", instance.kind, instance.handle,
                            instance.release_id, instance.environment, instance.port, now - orphan.at)
                target.stop(instance, timeout=STOP_TIMEOUT_S)
                stopped += 1
        except Exception:
            log.exception("orphaned model servers of the %s target not stopped", environment.target)
    return {"orphans_stopped": stopped}
