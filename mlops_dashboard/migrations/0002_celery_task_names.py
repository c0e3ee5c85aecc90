"""Celery task names follow the service they call. Beat keeps task names in django-celery-beat's
PeriodicTask rows (its own schedule and any stored by an app), so they are renamed here: no schedule
stops, whatever started it."""

from django.db import migrations
from django.utils import timezone

RENAMES = {
    "datasets.ingest": "datasets.dataset_ingest",
    "pipelines.run_execute": "pipelines.pipeline_run_execute",
    "pipelines.runs_kick": "pipelines.pipeline_runs_kick",
    "monitoring.collect": "monitoring.metrics_collect",
    "monitoring.check": "monitoring.monitoring_check",
    "monitoring.rollup": "monitoring.metrics_rollup",
    "events.publish_test_event": "mlops_dashboard.publish_test_event",
    "jobs.reap_stale": "mlops_dashboard.jobs_recover",
}


def _rename(apps, mapping: dict) -> None:
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for old, new in mapping.items():
        PeriodicTask.objects.filter(task=old).update(task=new)
    if PeriodicTask.objects.exists():
        # Beat reloads its schedule when this row's time moves.
        PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor):
    _rename(apps, RENAMES)


def backwards(apps, schema_editor):
    _rename(apps, {new: old for old, new in RENAMES.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("mlops_dashboard", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
