"""{% monitoring_charts environment=... %} or {% monitoring_charts release=... %}: live quality,
abnormal outputs and drift, drawn by static/slipway/charts.js like the serving figures."""

from django import template
from django.conf import settings

from monitoring.queries import charts_of_environment, charts_of_release
from releases.models import Environment, Release

register = template.Library()


@register.inclusion_tag("monitoring/_charts.html")
def monitoring_charts(environment: Environment | None = None,
                      release: Release | None = None) -> dict:
    charts = charts_of_environment(environment) if environment is not None else charts_of_release(release)
    return {"charts": charts, "time_zone": settings.TIME_ZONE,
            "line_kind": "release" if environment is not None else "environment",
            "subject": environment.name if environment is not None else f"release #{release.pk}",
            "has_data": bool(charts["watch"]["series"] or charts["quality"]["series"])}
