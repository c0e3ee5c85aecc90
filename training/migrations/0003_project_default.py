"""The rows made before projects exist go to the "Default" project."""

from django.db import migrations


def forwards(apps, schema_editor):
    project = apps.get_model("mlops_dashboard", "Project").objects.get(slug="default")
    for name in ['TrainingJob', 'ModelVersion', 'Deployment']:
        apps.get_model("training", name).objects.filter(project__isnull=True).update(project=project)
    ModelVersion = apps.get_model("training", "ModelVersion")
    for version in ModelVersion.objects.filter(training_job__isnull=False, created_by__isnull=True).select_related("training_job"):
        if version.training_job.created_by_id:
            ModelVersion.objects.filter(pk=version.pk).update(created_by_id=version.training_job.created_by_id)


class Migration(migrations.Migration):
    dependencies = [("training", "0002_project"), ("mlops_dashboard", "0006_default_project")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
