"""Shadow runs per service (2 of 2): the service is required, the environment link goes, at most one run per
service at a time; a model's monitoring policy can make the shadow verdict a gate before its canary."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0004_shadow_runs_per_service'),
    ]

    operations = [
        migrations.RemoveConstraint(model_name='shadowrun', name='one_running_shadow_per_environment'),
        migrations.RemoveField(model_name='shadowrun', name='environment'),
        migrations.AlterField(
            model_name='shadowrun',
            name='service',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='shadow_runs',
                                    to='releases.service'),
        ),
        migrations.AddConstraint(
            model_name='shadowrun',
            constraint=models.UniqueConstraint(condition=models.Q(('stopped_at', None)), fields=('service',),
                                               name='one_running_shadow_per_service'),
        ),
        migrations.AlterField(
            model_name='shadowrun',
            name='instance',
            field=models.JSONField(default=dict, help_text="the shadow's own server (not in the proxy); empty while "
                                                           "it is being started"),
        ),
        migrations.AddField(
            model_name='monitoringpolicy',
            name='shadow_gate',
            field=models.BooleanField(default=False, help_text="a release's canary in production waits for the verdict "
                                      "of its shadow run there (and is refused when it failed or was stopped before a "
                                      "verdict)"),
        ),
    ]
