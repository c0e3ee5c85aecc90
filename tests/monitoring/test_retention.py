"""Retention of the monitoring app: resolved alerts, anomalies and finished detections with their
score files; host metrics follow the same pattern (0 keeps forever, batched deletes)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from mlops_dashboard.tasks import retention_prune
from monitoring import services
from monitoring.models import Alert, Anomaly, AnomalyDetection, MetricSample

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


def ago(age):
    return timezone.now() - age


def test_resolved_alerts_go_after_their_retention_and_unresolved_ones_stay(settings):
    from tests.factories import AlertFactory

    settings.RETENTION_ALERTS_DAYS = 90
    old_resolved = AlertFactory(status="resolved", resolved_at=ago(91 * DAY), subject="a")
    recent_resolved = AlertFactory(status="resolved", resolved_at=ago(10 * DAY), subject="b")
    old_open = AlertFactory(subject="c")
    old_acknowledged = AlertFactory(status="acknowledged", subject="d")
    Alert.objects.filter(pk__in=[old_open.pk, old_acknowledged.pk]).update(created_at=ago(400 * DAY),
                                                                           last_seen_at=ago(400 * DAY))
    assert retention_prune()["alerts"] == 1
    assert set(Alert.objects.values_list("pk", flat=True)) == {recent_resolved.pk, old_open.pk, old_acknowledged.pk}
    assert not Alert.objects.filter(pk=old_resolved.pk).exists()


def detection(dataset, *, status="succeeded", age=timedelta(0)):
    from tests.factories import AnomalyDetectionFactory

    row = AnomalyDetectionFactory(dataset=dataset, status=status, finished_at=ago(age) if status != "running" else None)
    AnomalyDetection.objects.filter(pk=row.pk).update(created_at=ago(age))
    if status == "succeeded":
        row.scores_file.save("s.npy", ContentFile(b"\x93NUMPY"), save=True)
        Anomaly.objects.create(source="dataset", entity=dataset.name, metric="row 3", score=0.9, severity="high",
                               detection=row, detected_at=ago(age))
    return row


def test_anomalies_and_finished_detections_go_with_their_score_files(settings):
    from tests.factories import AnomalyFactory, DatasetFactory

    settings.RETENTION_ANOMALIES_DAYS = 30
    old_spike, new_spike = AnomalyFactory(detected_at=ago(31 * DAY)), AnomalyFactory(detected_at=ago(DAY))
    dataset = DatasetFactory()
    oldest = detection(dataset, age=60 * DAY)
    old_failed = detection(dataset, status="failed", age=50 * DAY)
    latest_but_old = detection(dataset, age=40 * DAY)  # the dataset page shows its latest detection
    running = detection(dataset, status="running", age=45 * DAY)
    other = DatasetFactory()
    recent = detection(other, age=DAY)
    oldest_file = oldest.scores_file.name
    assert default_storage.exists(oldest_file)

    result = retention_prune()
    assert result["anomalies"] == 3  # one spike, two detections (the detection's anomalies go with it)
    assert set(Anomaly.objects.filter(source="metrics").values_list("pk", flat=True)) == {new_spike.pk}
    assert not Anomaly.objects.filter(pk=old_spike.pk).exists()
    assert set(AnomalyDetection.objects.values_list("pk", flat=True)) == {latest_but_old.pk, running.pk, recent.pk}
    assert not Anomaly.objects.filter(detection_id=oldest.pk).exists()
    assert Anomaly.objects.filter(detection_id=latest_but_old.pk).exists()
    assert not default_storage.exists(oldest_file), "the score file goes with its detection"
    assert default_storage.exists(latest_but_old.scores_file.name) and default_storage.exists(recent.scores_file.name)
    assert old_failed.pk not in AnomalyDetection.objects.values_list("pk", flat=True)


def test_host_metrics_follow_the_same_pattern(settings):
    from tests.factories import MetricSampleFactory

    settings.MONITORING_RAW_RETENTION_HOURS = 0  # keep forever
    settings.MONITORING_MINUTE_RETENTION_DAYS = 30
    settings.RETENTION_BATCH_SIZE = 2
    ancient_raw = MetricSampleFactory(timestamp=ago(400 * DAY))
    for i in range(5):
        MetricSampleFactory(resolution="minute", timestamp=ago((31 + i) * DAY))
    kept_minute = MetricSampleFactory(resolution="minute", timestamp=ago(DAY))
    result = services.metrics_rollup(now=timezone.now())
    assert result["raw_deleted"] == 0 and result["minutes_deleted"] == 5
    assert set(MetricSample.objects.filter(resolution="minute").values_list("pk", flat=True)) >= {kept_minute.pk}
    assert MetricSample.objects.filter(pk=ancient_raw.pk).exists()
    settings.MONITORING_RAW_RETENTION_HOURS = 24
    assert retention_prune()["metric_samples_raw"] == 1
