"""A release's page: stages live, candidates, gates, approvals and the audit trail; deciding at
its gate and picking another candidate go through the domain functions."""

from html import escape

from django.contrib import messages
from django.core.paginator import Page
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_POST

from releases import approvals, candidates
from releases.approvals import NotAllowed
from releases.models import Approval, Artifact, AuditEvent, GateCheck, Release, StageRun
from releases.models.pipeline import StageStatus
from releases.pages import queries
from releases.pages.access import viewer_required
from releases.pages.display import moment, stamp
from releases.statemachine import TERMINAL, TransitionError
from slipway.prepared import Prepared, prefetched


@Prepared
def release_detail_row(release_id: int) -> QuerySet[Release]:
    return (Release.objects.filter(pk=release_id)
            .select_related("version__model__policy__approver_group", "version__author", "version__artifact"))


@Prepared
def stages_of(release_id: int) -> QuerySet[StageRun]:
    return StageRun.objects.filter(release=release_id)


@Prepared
def gate_checks_of(release_id: int) -> QuerySet[GateCheck]:
    return GateCheck.objects.filter(release=release_id)


@Prepared
def artifacts_of(release_id: int) -> QuerySet[Artifact]:
    return Artifact.objects.filter(release=release_id)


@Prepared
def approvals_of(release_id: int) -> QuerySet[Approval]:
    return Approval.objects.filter(release=release_id).select_related("user")


def release_with_related(release_id: int) -> Release:
    """The release with its version, model, policy, author and original, and its stages, gate checks,
    artifacts and approvals read as prefetch_related would read them."""
    try:
        release = release_detail_row.get(release_id)
    except Release.DoesNotExist as missing:
        raise Http404(f"No release #{release_id}") from missing
    for name, rows in (("stages", stages_of), ("gate_checks", gate_checks_of), ("artifacts", artifacts_of),
                       ("approvals", approvals_of)):
        prefetched(release, name, rows.list(release_id))
    return release


@Prepared
def audit_events(release_id: int) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(release=release_id)


AUDIT_PER_PAGE = 50
POLL_SECONDS = 1


def plane_chart(table: queries.CandidateTable) -> dict:
    """The candidates on the task-metric-against-latency plane, latency relative to the original's with
    its measured interval (the original at 1), and the accuracy budget; a language model's candidates
    on the perplexity-against-tokens/s plane."""
    points = [{"label": "original" if row.reference else row.artifact.kind, "x": round(row.speed[0], 4),
               "low": round(row.speed[1], 4), "high": round(row.speed[2], 4), "y": row.task_value,
               "chosen": row.chosen}
              for row in table.rows
              if not row.failed and row.speed is not None and row.task_value is not None]
    x_label = "latency relative to the original (95% interval)"
    if table.relative:  # a language model: perplexity against tokens/s at batch 1 (the fp32 decoder included)
        x_label = "tokens/s (batch 1)"
        points = [{"label": row.artifact.kind, "x": round(row.figures["tokens_per_s"], 1),
                   "low": round(row.figures["tokens_per_s"], 1), "high": round(row.figures["tokens_per_s"], 1),
                   "y": row.task_value, "chosen": row.chosen}
                  for row in table.rows
                  if not row.failed and "tokens_per_s" in row.figures and row.task_value is not None]
    return {"metric": table.metric, "higher_is_better": table.higher_is_better, "budget": table.budget_limit,
            "points": points, "x_label": x_label}


def release_context(request: HttpRequest, release_id: int) -> dict:
    release = release_with_related(release_id)
    gate = approvals.waiting_gate(release)
    cannot_approve = approvals.why_no_decision(request.user, release, gate)
    group = approvals.approver_group(release)
    table = queries.candidate_table(release)
    return {
        "release": release,
        "created": moment(release.created_at),
        "stages": stamp(release.stages.all(), "queued_at", "started_at"),
        "decisions": stamp(release.approvals.all(), "created_at"),
        "live": release.status not in TERMINAL and gate is None,
        "poll_seconds": POLL_SECONDS,
        "candidates": table,
        "plane": plane_chart(table),
        "gate": gate,
        "cannot_approve": cannot_approve,
        "may_pick": candidates.why_no_pick(request.user, release) is None,
        "still_needed": approvals.waiting_on(release),
        "approver_group": group,
        "eligible": queries.eligible_approvers(release, group, gate) if gate else [],
        "gate_ran": any(s.name == "gate" and s.status not in (StageStatus.PENDING, StageStatus.QUEUED)
                        for s in release.stages.all()),
        "audit": audit_page(request, release),
    }


def audit_page(request: HttpRequest, release: Release) -> Page:
    """One page of the release's audit trail, each event with its `line`: when, who, what, its status change,
    reason and comment."""
    page = queries.paginate(request, audit_events.rows(release.pk), AUDIT_PER_PAGE, "audit",
                            moments=("at",))
    for event in page:
        event.line = audit_line(event)
    return page


def audit_line(event: AuditEvent) -> SafeString:
    """An audit event as the trail lists it, escaped here (with what Django's escaping calls): a page lists
    fifty, and a template's tests and lookups for each cost more than the rest of the page's trail."""
    before, after = event.before.get("status", ""), event.after.get("status", "")
    transition = f" {before} \u2192 {after}" if before or after else ""
    comment = event.after.get("comment", "")
    line = (f"{event.when['at'].full()}\n      <strong>{escape(event.actor_label)}</strong> {escape(event.action)} "  # type: ignore[attr-defined]
            f'<span class="muted">{escape(event.subject)}{escape(transition)}</span>')
    if event.reason:
        line += f'\n      <div class="reason">{escape(event.reason)}</div>'
    if comment:
        line += f'\n      <div class="reason">\u201c{escape(comment)}\u201d</div>'
    return mark_safe(line)  # noqa: S308 - every value escaped above


@viewer_required
def release_detail(request: HttpRequest, release_id: int) -> HttpResponse:
    return render(request, "releases/release_detail.html", release_context(request, release_id))


@viewer_required
def release_live(request: HttpRequest, release_id: int) -> HttpResponse:
    """The parts of the release page that change while it runs, for htmx to swap in."""
    return render(request, "releases/_release_live.html", release_context(request, release_id))


@viewer_required
@require_POST
def release_decide(request: HttpRequest, release_id: int) -> HttpResponse:
    decision = request.POST.get("decision")
    if decision not in Approval.Decision.values:
        messages.error(request, "Not recorded: choose approve or reject.")
        return redirect("release", release_id=release_id)
    try:
        approvals.decide(release_id, request.user, decision, request.POST.get("comment", "")[:2000])
    except (NotAllowed, TransitionError) as exc:
        messages.error(request, f"Not recorded: {exc}.")
    else:
        messages.success(request, f"Your {'approval' if decision == 'approve' else 'rejection'} is recorded.")
    return redirect("release", release_id=release_id)


@viewer_required
@require_POST
def release_pick(request: HttpRequest, release_id: int) -> HttpResponse:
    """Ship another candidate than the one chosen automatically (while the release awaits approval)."""
    try:
        artifact_id = int(request.POST.get("artifact", ""))
    except ValueError:
        messages.error(request, "Not changed: choose one of the candidates in the table.")
        return redirect("release", release_id=release_id)
    try:
        release = candidates.pick(release_id, artifact_id, request.user)
    except (NotAllowed, TransitionError, ValueError) as exc:
        messages.error(request, f"Not changed: {exc}.")
    else:
        chosen = release.chosen_artifact.kind if release.chosen_artifact else "?"
        messages.success(request, f"Release #{release.pk} now ships {chosen}; the automatic "
                                  "gate passed it again.")
    return redirect("release", release_id=release_id)
