"""Per-model services (2 of 3, data): each (model, environment) owns its deployments, traffic changes and samples.

Three steps: add services and nullable links, carry the data over (an environment-wide traffic change
becomes one change per model whose share it changed), then drop the environment links and constrain."""

import django.db.models.deletion
from django.db import migrations, models


def _model_of(Release, cache: dict, release_id: int) -> int | None:
    if release_id not in cache:
        cache[release_id] = Release.objects.filter(pk=release_id).values_list("version__model_id", flat=True).first()
    return cache[release_id]


def carry_over(apps, schema_editor) -> None:  # noqa: ANN001
    Service = apps.get_model("releases", "Service")
    Deployment = apps.get_model("releases", "Deployment")
    TrafficChange = apps.get_model("releases", "TrafficChange")
    ServingSample = apps.get_model("releases", "ServingSample")
    Release = apps.get_model("releases", "Release")
    models_of: dict[int, int | None] = {}
    services: dict[tuple[int, int | None], int] = {}

    def service(environment_id: int, release_id: int) -> int:
        model_id = _model_of(Release, models_of, release_id)
        key = (environment_id, model_id)
        if key not in services:
            services[key] = Service.objects.get_or_create(environment_id=environment_id, model_id=model_id)[0].pk
        return services[key]

    for deployment in Deployment.objects.all():
        deployment.service_id = service(deployment.environment_id, deployment.release_id)
        deployment.save(update_fields=["service"])
    for sample in ServingSample.objects.all().iterator():
        sample.service_id = service(sample.environment_id, sample.release_id)
        sample.save(update_fields=["service"])
    last: dict[int, dict[str, int]] = {}  # service → its shares after the latest change carried over
    for change in list(TrafficChange.objects.order_by("environment_id", "at", "id")):
        split: dict[int, dict[str, int]] = {}
        for release_id, share in change.shares.items():
            split.setdefault(service(change.environment_id, int(release_id)), {})[release_id] = share
        for pk, before in last.items():  # a model that lost all its traffic in this change
            if pk not in split and before and Service.objects.filter(pk=pk, environment_id=change.environment_id).exists():
                split[pk] = {}
        kept = False
        for pk, shares in split.items():
            if last.get(pk) == shares:
                continue  # another model's move: this model's split did not change
            last[pk] = shares
            if not kept:
                change.service_id, change.shares, kept = pk, shares, True
                change.save(update_fields=["service", "shares"])
            else:
                TrafficChange.objects.create(service_id=pk, environment_id=change.environment_id, at=change.at,
                                             shares=shares, action=change.action, actor_id=change.actor_id,
                                             reason=change.reason)
        if not kept:
            change.delete()


def back(apps, schema_editor) -> None:  # noqa: ANN001
    """Each record's environment from its service (the split changes stay split)."""
    for name in ("Deployment", "TrafficChange", "ServingSample"):
        model = apps.get_model("releases", name)
        for row in model.objects.select_related("service"):
            row.environment_id = row.service.environment_id
            row.save(update_fields=["environment"])


class Migration(migrations.Migration):

    dependencies = [
        ('releases', '0011_services'),
    ]

    operations = [
        migrations.RunPython(carry_over, back, elidable=False),
    ]
