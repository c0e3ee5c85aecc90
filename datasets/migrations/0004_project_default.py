"""The rows made before projects exist go to the "Default" project."""

from django.db import migrations


def forwards(apps, schema_editor):
    project = apps.get_model("mlops_dashboard", "Project").objects.get(slug="default")
    for name in ['Dataset', 'ProcessingJob']:
        apps.get_model("datasets", name).objects.filter(project__isnull=True).update(project=project)


class Migration(migrations.Migration):
    dependencies = [("datasets", "0003_project"), ("mlops_dashboard", "0006_default_project")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
