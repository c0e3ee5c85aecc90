"""Anomaly detections and their anomalies, and the alerts about jobs, go to the "Default" project.
Alert rules, system alerts and metric anomalies stay global (project null)."""

from django.db import migrations


def forwards(apps, schema_editor):
    project = apps.get_model("mlops_dashboard", "Project").objects.get(slug="default")
    apps.get_model("monitoring", "AnomalyDetection").objects.filter(project__isnull=True).update(project=project)
    apps.get_model("monitoring", "Anomaly").objects.filter(detection__isnull=False).update(project=project)
    # A job alert (failed, stalled) is about one job: its project's.
    apps.get_model("monitoring", "Alert").objects.filter(alert_type="job").update(project=project)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0006_project"), ("mlops_dashboard", "0006_default_project")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
