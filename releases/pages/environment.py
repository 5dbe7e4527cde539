"""Environments: every model's service with its live release, traffic split, canary progress and its own
rollback button. Each service has its own page (releases/pages/service.py)."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from releases import canaries, deploys, routing
from releases.models import Canary, Deployment, Environment, Service
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import Moment, lasted, moment, stamp
from releases.roles import AnyUser
from slipway.prepared import Prepared

POLL_SECONDS = 5


@viewer_required
def environment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "releases/environment_list.html",
                  {"environments": queries.live_deployments()})


@dataclass
class ServiceRow:
    """What the pages show of one service: who serves, what a rollback would do and why not, the canary."""

    service: Service
    address: str
    deployments: list[Deployment]
    active: Deployment | None
    target: Deployment | None
    target_since: Moment | None
    cannot_roll_back: str | None
    canary: Canary | None
    cannot_decide: str | None
    target_warm_for: str | None = None  # on the service's page: how long the target has been warm

    @property
    def live(self) -> bool:
        return any(d.traffic_percent for d in self.deployments)


@dataclass(frozen=True)
class ServiceQueries:
    """The queries behind the service rows of one scope: the services of a model, of an environment, or
    one service (`scope` is the Service field that picks them)."""

    services: Prepared[Service]
    running: Prepared[Deployment]  # their deployments that are not stopped, largest share first
    canaries: Prepared[Canary]  # their open canaries

    @classmethod
    def of(cls, scope: str) -> "ServiceQueries":
        def services(scope_id: int) -> QuerySet[Service]:
            return Service.objects.filter(**{scope: scope_id}).select_related("environment", "model")

        def running(scope_id: int) -> QuerySet[Deployment]:
            return (Deployment.objects.filter(**{f"service__{scope}": scope_id}).exclude(role=Deployment.Role.STOPPED)
                    .select_related("release__version__model").order_by("-traffic_percent", "-updated_at", "-id"))

        def canaries(scope_id: int) -> QuerySet[Canary]:
            return (Canary.objects.filter(**{f"deployment__service__{scope}": scope_id},
                                          status__in=[Canary.Status.WATCHING, Canary.Status.WAITING])
                    .select_related("deployment__release__version__model"))

        return cls(Prepared(services), Prepared(running), Prepared(canaries))


SCOPES = {scope: ServiceQueries.of(scope) for scope in ("model", "environment", "pk")}


def service_rows(user: AnyUser, scope: str, scope_id: int, *, how_long: bool = False) -> list[ServiceRow]:
    """One row per service of the model, the environment or the one service (`scope`: "model",
    "environment" or "pk"), from three queries whatever their number; with `how_long` (one service's
    page), each deployment also says how long it has served in its role, from the record of traffic moves."""
    prepared = SCOPES[scope]
    rows_of = {service.pk: service for service in prepared.services.list(scope_id)}
    if not rows_of:
        return []
    running: dict[int, list[Deployment]] = {pk: [] for pk in rows_of}
    for deployment in prepared.running.list(scope_id):
        deployment.service = rows_of[deployment.service_id]  # as a prefetch of the service's deployments leaves it
        running[deployment.service_id].append(deployment)
    open_canaries = {c.deployment.service_id: c for c in prepared.canaries.list(scope_id)}
    rows = []
    for service in rows_of.values():
        deployments = stamp(running[service.pk], "updated_at")
        active = next((d for d in deployments if d.role == Deployment.Role.ACTIVE), None)
        warm = sorted((d for d in deployments if d.role == Deployment.Role.WARM), key=lambda d: (d.updated_at, d.pk))
        target = warm[-1] if warm else None
        canary = open_canaries.get(service.pk)
        warm_for = None
        if how_long:
            shares = {d.release_id: d.traffic_percent for d in deployments}
            since = queries.serving_since(service.traffic_changes.all(), shares)
            for d in deployments:
                d.serving_for = lasted(*since.get(d.release_id, (None, False)))
            warm_for = lasted(*since.get(target.release_id, (None, False))) if target else None
        rows.append(ServiceRow(
            service=service, address=routing.address(service), deployments=deployments, active=active,
            target=target, target_since=moment(target.updated_at) if target else None,
            cannot_roll_back=deploys.why_no_rollback(user, service, active, target), canary=canary,
            cannot_decide=canaries.why_no_decision(user, service, canary), target_warm_for=warm_for))
    return rows


def live_context(request: HttpRequest, environment: Environment) -> dict:
    rows = service_rows(request.user, "environment", environment.pk)
    return {"environment": environment, "rows": rows, "live": any(r.live for r in rows),
            "poll_seconds": POLL_SECONDS}


@viewer_required
def environment_detail(request: HttpRequest, name: str) -> HttpResponse:
    environment = get_object_or_404(Environment, name=name)
    return render(request, "releases/environment_detail.html", live_context(request, environment))


@viewer_required
def environment_live(request: HttpRequest, name: str) -> HttpResponse:
    """The services part of the environment page, for htmx to swap in."""
    environment = get_object_or_404(Environment, name=name)
    return render(request, "releases/_environment_live.html", live_context(request, environment))
