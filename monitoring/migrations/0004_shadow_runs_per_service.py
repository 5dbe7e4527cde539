"""Shadow runs per service (1 of 2): a run belongs to one model's service in its environment, so two models
in one environment can each have a shadow at once. This step adds the link and carries the data over."""

import django.db.models.deletion
from django.db import migrations, models


def carry_over(apps, schema_editor) -> None:  # noqa: ANN001
    ShadowRun = apps.get_model("monitoring", "ShadowRun")
    Service = apps.get_model("releases", "Service")
    for run in ShadowRun.objects.select_related("shadow__version"):
        run.service_id = Service.objects.get_or_create(environment_id=run.environment_id,
                                                       model_id=run.shadow.version.model_id)[0].pk
        run.save(update_fields=["service"])


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0003_collect_serving'),
        ('releases', '0014_canaries'),
    ]

    operations = [
        migrations.AddField(
            model_name='shadowrun',
            name='service',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.CASCADE,
                                    related_name='shadow_runs', to='releases.service'),
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
    ]
