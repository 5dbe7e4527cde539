"""Per-model services: each (model, environment) owns its deployments, traffic changes and samples.

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
    services: dict[tuple[int, int], int] = {}

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


class Migration(migrations.Migration):

    dependencies = [
        ('releases', '0008_policy_memory_budget'),
    ]

    operations = [
        migrations.CreateModel(
            name='Service',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('environment', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='services', to='releases.environment')),
                ('model', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='services', to='releases.model')),
            ],
            options={'ordering': ['environment__position', 'model__name']},
        ),
        migrations.AddConstraint(
            model_name='service',
            constraint=models.UniqueConstraint(fields=('environment', 'model'), name='one_service_per_model_and_environment'),
        ),
        migrations.AddField(model_name='deployment', name='service', field=models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.PROTECT, related_name='deployments', to='releases.service')),
        migrations.AddField(model_name='trafficchange', name='service', field=models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.PROTECT, related_name='traffic_changes', to='releases.service')),
        migrations.AddField(model_name='servingsample', name='service', field=models.ForeignKey(
            null=True, on_delete=django.db.models.deletion.CASCADE, related_name='samples', to='releases.service')),
        migrations.RunPython(carry_over, elidable=False),
        migrations.RemoveConstraint(model_name='deployment', name='one_active_release_per_environment'),
        migrations.RemoveConstraint(model_name='deployment', name='one_canary_per_environment'),
        migrations.RemoveConstraint(model_name='deployment', name='one_deployment_per_release'),
        migrations.RemoveIndex(model_name='servingsample', name='releases_se_environ_d3fadc_idx'),
        migrations.RemoveField(model_name='deployment', name='environment'),
        migrations.RemoveField(model_name='trafficchange', name='environment'),
        migrations.RemoveField(model_name='servingsample', name='environment'),
        migrations.AlterField(model_name='deployment', name='service', field=models.ForeignKey(
            on_delete=django.db.models.deletion.PROTECT, related_name='deployments', to='releases.service')),
        migrations.AlterField(model_name='trafficchange', name='service', field=models.ForeignKey(
            on_delete=django.db.models.deletion.PROTECT, related_name='traffic_changes', to='releases.service')),
        migrations.AlterField(model_name='servingsample', name='service', field=models.ForeignKey(
            on_delete=django.db.models.deletion.CASCADE, related_name='samples', to='releases.service')),
        migrations.AlterModelOptions(name='deployment', options={'ordering': ['service', '-updated_at']}),
        migrations.AddConstraint(model_name='deployment', constraint=models.UniqueConstraint(
            condition=models.Q(('role', 'active')), fields=('service',), name='one_active_release_per_service')),
        migrations.AddConstraint(model_name='deployment', constraint=models.UniqueConstraint(
            condition=models.Q(('role', 'canary')), fields=('service',), name='one_canary_per_service')),
        migrations.AddConstraint(model_name='deployment', constraint=models.UniqueConstraint(
            fields=('service', 'release'), name='one_deployment_per_release_and_service')),
        migrations.AddIndex(model_name='servingsample', index=models.Index(fields=['service', 'at'], name='servingsample_service_at')),
    ]
