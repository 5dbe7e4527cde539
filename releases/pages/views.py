"""Server-rendered pages. Login required everywhere; writes go through the domain functions."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from releases import approvals
from releases.approvals import NotAllowed
from releases.models import Approval, AuditEvent, Deployment, Environment, Model, ModelVersion, Release
from releases.models.pipeline import ReleaseStatus
from releases.statemachine import TERMINAL, TransitionError

RELEASE_LIST = Release.objects.select_related("version__model", "version__author")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    waiting = [r for r in RELEASE_LIST.filter(status=ReleaseStatus.AWAITING_APPROVAL)[:50]
               if approvals.why_not(request.user, r) is None
               and not r.approvals.filter(user=request.user).exists()]
    environments = Environment.objects.prefetch_related(Prefetch(
        "deployments", queryset=Deployment.objects.filter(traffic_percent__gt=0)
        .select_related("release__version__model")))
    return render(request, "releases/home.html", {
        "environments": environments,
        "waiting": waiting,
        "recent": RELEASE_LIST[:15],
        "failures": RELEASE_LIST.filter(status=ReleaseStatus.FAILED)[:5],
    })


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    models = Model.objects.annotate(version_count=Count("versions")).order_by("name")
    return render(request, "releases/model_list.html", {"models": models})


@login_required
def model_detail(request: HttpRequest, name: str) -> HttpResponse:
    model = get_object_or_404(Model.objects.select_related("policy__approver_group"), name=name)
    versions = (ModelVersion.objects.filter(model=model).select_related("author")
                .prefetch_related("releases")[:100])
    return render(request, "releases/model_detail.html", {"model": model, "versions": versions})


def _release_context(request: HttpRequest, release_id: int) -> dict:
    release = get_object_or_404(
        Release.objects.select_related("version__model__policy__approver_group", "version__author",
                                       "version__artifact", "chosen_artifact")
        .prefetch_related("stages", "gate_checks", "metrics", "approvals__user"),
        pk=release_id)
    decided = any(a.user_id == request.user.pk for a in release.approvals.all())
    return {
        "release": release,
        "live": release.status not in TERMINAL and release.status != ReleaseStatus.AWAITING_APPROVAL,
        "release_metrics": [m for m in release.metrics.all() if m.artifact_id == release.chosen_artifact_id],
        "cannot_approve": "you have already decided" if decided else approvals.why_not(request.user, release),
        "still_needed": approvals.waiting_on(release),
        "approver_group": approvals.approver_group(release),
    }


@login_required
def release_detail(request: HttpRequest, release_id: int) -> HttpResponse:
    context = _release_context(request, release_id)
    context["audit"] = AuditEvent.objects.filter(release_id=release_id).select_related("actor")[:200]
    return render(request, "releases/release_detail.html", context)


@login_required
def release_live(request: HttpRequest, release_id: int) -> HttpResponse:
    """The parts of the release page that change while it runs, for htmx to swap in."""
    return render(request, "releases/_release_live.html", _release_context(request, release_id))


@login_required
@require_POST
def release_decide(request: HttpRequest, release_id: int) -> HttpResponse:
    decision = request.POST.get("decision")
    if decision not in Approval.Decision.values:
        messages.error(request, "Choose approve or reject.")
        return redirect("release", release_id=release_id)
    try:
        approvals.decide(release_id, request.user, decision, request.POST.get("comment", "")[:2000])
    except (NotAllowed, TransitionError) as exc:
        messages.error(request, f"Not recorded: {exc}.")
    else:
        messages.success(request, f"Your {'approval' if decision == 'approve' else 'rejection'} is recorded.")
    return redirect("release", release_id=release_id)
