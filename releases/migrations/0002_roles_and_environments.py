from django.conf import settings
from django.db import migrations

ROLES = ["viewer", "approver", "deployer", "on-call", "admin"]
ENVIRONMENTS = [("staging", 0, 0, False), ("production", 1, 1, True)]  # port: offset from the first proxy port


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Environment = apps.get_model("releases", "Environment")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    first_port = getattr(settings, "SLIPWAY_FIRST_PROXY_PORT", 18081)
    for name, position, offset, approval in ENVIRONMENTS:
        Environment.objects.get_or_create(name=name, defaults={"position": position, "proxy_port": first_port + offset,
                                                               "requires_approval": approval})


class Migration(migrations.Migration):
    dependencies = [("releases", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
