"""Retention in the core: the registry every app adds its kinds to, deletes in batches, orphaned
files, the activity feed, sessions, and the beat job through a real worker."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mlops_dashboard import retention
from mlops_dashboard.models import Activity
from mlops_dashboard.tasks import retention_prune
from tests import procs

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


def aged(model, obj, **ages):
    """Set timestamps (auto_now_add ones too) to `now - age`."""
    now = timezone.now()
    model.objects.filter(pk=obj.pk).update(**{field: now - age for field, age in ages.items()})
    return obj


def activity(age: timedelta) -> Activity:
    from tests.factories import ActivityFactory

    return aged(Activity, ActivityFactory(), created_at=age)


def test_every_app_registers_what_grows_and_beat_prunes_it_hourly():
    registered = {kind.key: kind for kind in retention.kinds()}
    assert {"activity", "sessions", "alerts", "anomalies", "pipeline_runs", "training_jobs", "processing_jobs",
            "metric_samples_raw", "metric_samples_minute", "datasets", "model_versions", "telemetry_points",
            "telemetry_minutes", "telemetry_hours", "telemetry_imports"} <= set(registered)
    settings_of = {key: kind.setting for key, kind in registered.items()}
    assert settings_of["activity"] == "RETENTION_ACTIVITY_DAYS" and settings_of["alerts"] == "RETENTION_ALERTS_DAYS"
    assert settings_of["pipeline_runs"] == "RETENTION_PIPELINE_RUNS_DAYS"
    assert settings_of["training_jobs"] == settings_of["processing_jobs"] == "RETENTION_JOBS_DAYS"
    assert settings_of["anomalies"] == "RETENTION_ANOMALIES_DAYS"
    assert settings_of["telemetry_points"] == "TELEMETRY_RAW_RETENTION_DAYS"
    # Orphaned files are looked for in every folder where rows keep files.
    assert {k.directory for k in registered.values() if k.referenced} == {"datasets", "models", "anomaly",
                                                                           "telemetry_imports"}
    entry = settings.CELERY_BEAT_SCHEDULE["retention-prune"]
    assert entry["task"] == "mlops_dashboard.retention_prune" and entry["schedule"] == 3600


def test_old_activity_goes_and_recent_activity_stays(settings):
    settings.RETENTION_ACTIVITY_DAYS = 90
    old, recent = activity(91 * DAY), activity(89 * DAY)
    result = retention_prune()
    assert result["activity"] == 1
    assert list(Activity.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Activity.objects.filter(pk=old.pk).exists()


def test_a_retention_of_zero_keeps_forever(settings):
    settings.RETENTION_ACTIVITY_DAYS = 0
    old = activity(3650 * DAY)
    assert "activity" not in retention_prune()
    assert Activity.objects.filter(pk=old.pk).exists()


def test_expired_sessions_go():
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session

    live, expired = SessionStore(), SessionStore()
    live.create()
    expired.set_expiry(-10)
    expired.create()
    retention_prune()
    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]


def test_deletes_go_in_bounded_batches(settings):
    settings.RETENTION_ACTIVITY_DAYS = 1
    for _ in range(7):
        activity(2 * DAY)
    keep = activity(timedelta(0))
    with CaptureQueriesContext(connection) as queries:
        deleted = retention.delete_in_batches(Activity.objects.filter(created_at__lt=timezone.now() - DAY),
                                              batch_size=3)
    assert deleted == 7 and list(Activity.objects.values_list("pk", flat=True)) == [keep.pk]
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].upper().startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1, never one DELETE over every row


def test_one_kind_failing_does_not_stop_the_others(settings):
    settings.RETENTION_ACTIVITY_DAYS = 1
    old = activity(2 * DAY)
    broken = retention.register(retention.StorageKind(key="broken", label="Broken", setting="RETENTION_ACTIVITY_DAYS",
                                                      pruner="tests.mlops_dashboard.test_retention.no_such_pruner"))
    try:
        result = retention.prune_all()
    finally:
        retention._KINDS.pop(broken.key)
    assert "broken" not in result and result["activity"] == 1
    assert not Activity.objects.filter(pk=old.pk).exists()


def store(name: str, *, age: timedelta) -> str:
    stored = default_storage.save(name, ContentFile(b"a,b\n1,2\n"))
    then = time.time() - age.total_seconds()
    os.utime(default_storage.path(stored), (then, then))
    return stored


def test_orphaned_files_older_than_the_grace_period_go(settings, tmp_path):
    from tests.factories import DatasetFactory

    settings.MEDIA_ROOT = tmp_path  # only this test's files
    settings.RETENTION_ORPHAN_FILES_HOURS = 24
    referenced = DatasetFactory()
    store_age = timedelta(hours=25)
    os.utime(referenced.file.path, (time.time() - 86400 * 30,) * 2)  # old, but a row refers to it
    orphans = [store("datasets/orphan.csv", age=store_age), store("models/orphan.joblib", age=store_age),
               store("anomaly/orphan.npy", age=store_age)]
    uploading = store("datasets/uploading.csv", age=timedelta(minutes=5))  # no row yet: within the grace period
    unrelated = store("elsewhere/keep.txt", age=store_age)  # not a folder any kind owns

    result = retention_prune()
    assert (result["datasets_files"], result["model_versions_files"], result["anomalies_files"]) == (1, 1, 1)
    assert not any(default_storage.exists(name) for name in orphans)
    assert default_storage.exists(referenced.file.name) and default_storage.exists(uploading)
    assert default_storage.exists(unrelated)

    settings.RETENTION_ORPHAN_FILES_HOURS = 0  # never
    again = store("datasets/orphan2.csv", age=timedelta(days=400))
    retention_prune()
    assert default_storage.exists(again)


def test_beat_runs_the_prune_in_a_real_worker(settings):
    settings.RETENTION_ACTIVITY_DAYS = 90
    old, recent = activity(91 * DAY), activity(DAY)
    orphan = store("datasets/orphan-beat.csv", age=timedelta(days=2))
    worker = procs.Worker(beat=True, RETENTION_PRUNE_INTERVAL=2, RETENTION_ACTIVITY_DAYS=90).start()
    try:
        procs.wait_for(lambda: not Activity.objects.filter(pk=old.pk).exists(), timeout=180,
                       message="beat to run mlops_dashboard.retention_prune in the worker")
        procs.wait_for(lambda: not default_storage.exists(orphan), timeout=60, message="the orphaned file to go")
        assert Activity.objects.filter(pk=recent.pk).exists()
        assert "mlops_dashboard.retention_prune" in worker.output()
    finally:
        worker.stop()
