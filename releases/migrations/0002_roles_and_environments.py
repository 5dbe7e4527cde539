from django.db import migrations

ROLES = ["viewer", "approver", "deployer", "on-call", "admin"]
ENVIRONMENTS = [("staging", 0, 18081, False), ("production", 1, 18082, True)]


def create(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Environment = apps.get_model("releases", "Environment")
    for name in ROLES:
        Group.objects.get_or_create(name=name)
    for name, position, port, approval in ENVIRONMENTS:
        Environment.objects.get_or_create(name=name, defaults={"position": position, "proxy_port": port,
                                                               "requires_approval": approval})


class Migration(migrations.Migration):
    dependencies = [("releases", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
