"""Release health per model and environment, read off each service's record of traffic changes (DORA's
figures). A rollback of one model never counts against another.

Definitions, over a window of days ending now:
- a change is a release that gets traffic in the environment for the first time (canary or deploy);
- a deployment is a release that takes all of the environment's traffic (deploy or promote);
- deploy frequency: deployments per week;
- lead time: from the build being received to the deployment (median);
- change failure rate: changes that a rollback took traffic away from, over all changes — an aborted
  canary counts, since it served some requests;
- time to restore: from the failure's start to the rollback (mean), where the failure starts at the
  first alert fired for the release, or else when the release started to serve;
- time between failures: the model's time in service in the environment within the window (from the
  window's start, or from when the model first served there if that came later, less the time to
  restore) over the number of failures; never longer than the model has served.

Production is where failures reach users. A rollback in another environment (staging) is a change
caught before production: `Health.production` tells the two apart, and the page shows them apart.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median

from django.utils import timezone

from releases.models import AuditEvent, Release, TrafficChange

WEEK = timedelta(days=7)
PRODUCTION = "production"  # the environment users are served from (as releases/deploys.py names it)


@dataclass
class Health:
    model: str
    environment: str
    window: timedelta
    deployments: int = 0
    changes: int = 0
    failed_changes: int = 0
    lead_times: list[float] = field(default_factory=list)
    restore_times: list[float] = field(default_factory=list)
    in_service: timedelta | None = None  # within the window: from the model's first serving here (or the start)

    @property
    def production(self) -> bool:
        """Whether failures here reach users; elsewhere a rollback is a change caught before production."""
        return self.environment == PRODUCTION

    @property
    def deploys_per_week(self) -> float:
        return self.deployments / (self.window / WEEK)

    @property
    def lead_time_s(self) -> float | None:
        return median(self.lead_times) if self.lead_times else None

    @property
    def change_failure_rate(self) -> float | None:
        return self.failed_changes / self.changes if self.changes else None

    @property
    def failures(self) -> int:
        return len(self.restore_times)

    @property
    def time_to_restore_s(self) -> float | None:
        return sum(self.restore_times) / self.failures if self.failures else None

    @property
    def time_between_failures_s(self) -> float | None:
        if not self.failures:
            return None
        served = (self.in_service if self.in_service is not None else self.window).total_seconds()
        return max(served - sum(self.restore_times), 0.0) / self.failures


def release_health(days: int = 30, *, now: datetime | None = None) -> list[Health]:
    """One Health per (model, environment) that had traffic in the last `days` days, sorted by name."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    changes = list(TrafficChange.objects.filter(at__gt=since, at__lte=now).select_related("service__environment")
                   .order_by("service_id", "at", "id"))
    ids = {int(r) for c in changes for r in c.shares}
    earlier = _shares_before(since, {c.service_id for c in changes})
    ids |= {int(r) for shares in earlier.values() for r in shares}
    releases = {r.pk: r for r in Release.objects.filter(pk__in=ids).select_related("version__model")}
    alerts = _alerts(ids, since, now)
    rows: dict[tuple[str, str], Health] = {}

    def row(release_id: int, environment: str) -> Health:
        model = releases[release_id].version.model.name
        return rows.setdefault((model, environment), Health(model, environment, now - since))

    served_since: dict[int, datetime] = {}  # release id → when it started to serve in this service
    first_served: dict[tuple[str, str], datetime] = {}  # (model, environment) → its first serving in the window
    shares: dict[str, int] = {}
    service_id = None
    for change in changes:
        env = change.service.environment.name
        if change.service_id != service_id:
            service_id, served_since = change.service_id, {}
            shares = earlier.get(service_id, {})
            for key, share in shares.items():  # what served as the window opened served from its start
                if share > 0:
                    first_served.setdefault((releases[int(key)].version.model.name, env), since)
        if change.action == "drill":  # back and forth again: neither a deploy, nor a failure, nor a restore
            shares = change.shares
            continue
        for key, share in change.shares.items():
            release_id = int(key)
            if share > 0:
                first_served.setdefault((releases[release_id].version.model.name, env), change.at)
            if share > 0 and shares.get(key, 0) == 0:
                served_since[release_id] = change.at
                if change.action != "rollback":
                    row(release_id, env).changes += 1
            if share == 100 and shares.get(key, 0) < 100 and change.action != "rollback":
                health = row(release_id, env)
                health.deployments += 1
                health.lead_times.append((change.at - releases[release_id].version.created_at).total_seconds())
        if change.action == "rollback":
            for key, share in shares.items():
                if share > 0 and change.shares.get(key, 0) == 0:
                    release_id = int(key)
                    start = served_since.get(release_id, since)
                    start = next((at for at in alerts.get(release_id, []) if start <= at <= change.at), start)
                    health = row(release_id, env)
                    health.failed_changes += release_id in served_since
                    health.restore_times.append((change.at - start).total_seconds())
        shares = change.shares
    for (model, env), health in rows.items():
        health.in_service = now - first_served.get((model, env), since)
    return sorted(rows.values(), key=lambda h: (h.model, h.environment))


def _shares_before(since: datetime, service_ids: set[int]) -> dict[int, dict[str, int]]:
    """Each service's traffic split as the window opened."""
    found = {}
    for service_id in service_ids:
        last = (TrafficChange.objects.filter(service_id=service_id, at__lte=since)
                .order_by("-at", "-id").only("shares").first())
        found[service_id] = last.shares if last else {}
    return found


def _alerts(release_ids: set[int], since: datetime, now: datetime) -> dict[int, list[datetime]]:
    """When alerts fired for each release, in order."""
    fired: dict[int, list[datetime]] = defaultdict(list)
    for release_id, at in (AuditEvent.objects.filter(action="alert.fired", release_id__in=release_ids,
                                                     at__gt=since, at__lte=now)
                           .order_by("at").values_list("release_id", "at")):
        fired[release_id].append(at)
    return fired
