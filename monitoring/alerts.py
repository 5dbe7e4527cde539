"""Alerts from Prometheus' Alertmanager (webhook format, version 4), acted on by the model's policy.

A firing alert labelled with `model` and `environment` either notifies — an audit event with
action "alert.fired", which the webhooks turn into alert_firing deliveries — or rolls that model
back in that environment with the alert as the reason (other models are not touched). A model rolled
back by an alert is not rolled back by another within the policy's cool-down: a flapping alert
notifies instead.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from monitoring.models import AlertAction, MonitoringPolicy
from releases import deploys
from releases.actors import Actor
from releases.approvals import NotAllowed
from releases.models import Deployment, Environment, Model
from releases.roles import AnyUser
from releases.statemachine import TransitionError, record
from shipping.proxy import ProxyError

Action = AlertAction.Action


class MalformedNotification(ValueError):
    """The body is not an Alertmanager notification (the API answers 400)."""


@dataclass(frozen=True)
class Outcome:
    alertname: str
    fingerprint: str
    action: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"alertname": self.alertname, "fingerprint": self.fingerprint, "action": self.action,
                "detail": self.detail}


def alerts_of(document: object) -> list[dict]:
    if not isinstance(document, dict) or not isinstance(document.get("alerts"), list):
        raise MalformedNotification('expected an Alertmanager webhook notification: {"version": "4", '
                                    '"status": ..., "alerts": [...]}')
    if not all(isinstance(a, dict) and isinstance(a.get("labels", {}), dict) for a in document["alerts"]):
        raise MalformedNotification("every alert must be an object with a labels object")
    return document["alerts"]


def policy_of(model: Model) -> MonitoringPolicy:
    return MonitoringPolicy.objects.get_or_create(model=model)[0]


def _reason(alert: dict, labels: dict) -> str:
    annotations = alert.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    summary = annotations.get("summary") or annotations.get("description") or ""
    since = f" since {alert['startsAt']}" if alert.get("startsAt") else ""
    return f"alert {labels.get('alertname', '?')} firing{since}" + (f": {summary}" if summary else "")


def handle(alert: dict, user: AnyUser, token_name: str | None, *, may_roll_back: bool = False) -> Outcome:
    labels = {str(k): str(v) for k, v in alert.get("labels", {}).items()}
    name, fingerprint = labels.get("alertname", ""), str(alert.get("fingerprint", ""))[:64]

    def outcome(action: str, detail: str, environment: Environment | None = None,
                active: Deployment | None = None) -> Outcome:
        AlertAction.objects.create(environment=environment, release_id=active.release_id if active else None,
                                   alertname=name[:200], fingerprint=fingerprint, action=action, detail=detail)
        return Outcome(name, fingerprint, action, detail)

    if alert.get("status") != "firing":
        return Outcome(name, fingerprint, Action.IGNORED, f"status {alert.get('status')!r}: only firing alerts act")
    model = Model.objects.filter(name=labels.get("model", "")).first()
    environment = Environment.objects.filter(name=labels.get("environment", "")).first()
    if model is None or environment is None:
        return outcome(Action.IGNORED, "the alert's model and environment labels name no known model and environment")
    reason = _reason(alert, labels)
    actor = Actor.person(user, token_name)
    with transaction.atomic():
        policy = MonitoringPolicy.objects.select_for_update().get(pk=policy_of(model).pk)
        active = Deployment.objects.filter(service__environment=environment, service__model=model,
                                           role=Deployment.Role.ACTIVE).select_related("release__version").first()
        why_not = _why_no_rollback(policy, environment, active, model, labels)
        if why_not is None and not may_roll_back:
            why_not = "the alerts token lacks the 'rollback' scope, so an alert only notifies"
        fired = {"alert": name, "labels": labels, "fingerprint": fingerprint,
                 "starts_at": str(alert.get("startsAt", "")), "policy": policy.on_alert}
        if why_not is None and active is not None:
            # Recorded before the rollback, so that the failure it reports starts before its repair.
            record(actor, "alert.fired", release=active.release, subject=f"environment {environment.name}",
                   after=fired, reason=reason)
            try:
                deploys.rollback(environment.name, model.name, user, reason, expected_release_id=active.release_id,
                                 token_name=token_name)
            except (NotAllowed, TransitionError, ValueError, ProxyError) as exc:
                why_not = f"the rollback failed: {exc}"
                record(actor, "alert.rollback_failed", release=active.release,
                       subject=f"environment {environment.name}", after=fired, reason=why_not)
                return outcome(Action.NOTIFIED, why_not, environment, active)
            return outcome(Action.ROLLED_BACK, reason, environment, active)
        record(actor, "alert.fired", release=active.release if active else None,
               subject=f"environment {environment.name}",
               after=fired | ({"not_rolled_back": why_not} if policy.on_alert == "rollback" else {}),
               reason=reason)
        said = (why_not or reason) if policy.on_alert == "rollback" else reason
        return outcome(Action.NOTIFIED, said, environment, active)


def _why_no_rollback(policy: MonitoringPolicy, environment: Environment, active: Deployment | None,
                     model: Model, labels: dict[str, str]) -> str | None:
    """None when this alert should roll the environment back now, else why it only notifies."""
    if policy.on_alert != MonitoringPolicy.OnAlert.ROLLBACK:
        return "the policy is to notify"
    if active is None or active.release.version.model_id != model.pk:
        return f"no release of {model.name} serves in {environment.name}"
    if labels.get("release") and labels["release"] != str(active.release_id):
        return f"release #{labels['release']} no longer serves in {environment.name}"
    since = timezone.now() - timedelta(seconds=policy.cooldown_seconds)
    earlier = AlertAction.objects.filter(environment=environment, release__version__model=model,
                                         action=Action.ROLLED_BACK, at__gte=since).first()
    if earlier is not None:
        return (f"cool-down: alert {earlier.alertname} rolled {model.name} back in {environment.name} at "
                f"{earlier.at:%Y-%m-%d %H:%M:%S} UTC; no second rollback within {policy.cooldown_seconds} s")
    return None


def unbound(document: object, binds: Callable[[str, str], bool]) -> list[str]:
    """The model/environment pairs named by the alerts that the sender's token is not bound to."""
    pairs = {(str(a.get("labels", {}).get("model", "")), str(a.get("labels", {}).get("environment", "")))
             for a in alerts_of(document)}
    return sorted(f"{model or '(none)'} in {environment or '(none)'}" for model, environment in pairs
                  if not binds(model, environment))


def receive(document: object, user: AnyUser, token_name: str | None, *,
            may_roll_back: bool = False) -> list[dict[str, str]]:
    """Each alert acts; an automatic rollback also needs `may_roll_back` (the token's rollback scope)."""
    return [handle(alert, user, token_name, may_roll_back=may_roll_back).as_dict() for alert in alerts_of(document)]
