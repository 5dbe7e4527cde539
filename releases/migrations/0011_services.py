"""Per-model services (1 of 3, schema): each (model, environment) owns its deployments, traffic changes and samples.

Three steps: add services and nullable links, carry the data over (an environment-wide traffic change
becomes one change per model whose share it changed), then drop the environment links and constrain."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('releases', '0010_language_models'),
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
    ]
