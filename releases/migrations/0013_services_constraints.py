"""Per-model services (3 of 3, constraints): each (model, environment) owns its deployments, traffic changes and samples.

Three steps: add services and nullable links, carry the data over (an environment-wide traffic change
becomes one change per model whose share it changed), then drop the environment links and constrain."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('releases', '0012_services_data'),
    ]

    operations = [
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
