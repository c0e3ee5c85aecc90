"""Files of deleted datasets, and retention of finished processing jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from datasets.models import Dataset, ProcessingJob
from mlops_dashboard.tasks import retention_prune

pytestmark = pytest.mark.django_db(transaction=True)

DAY = timedelta(days=1)


def test_a_dataset_deleted_any_way_takes_its_file_once_committed():
    from tests.factories import DatasetFactory

    by_queryset, by_row, rolled_back = DatasetFactory(), DatasetFactory(), DatasetFactory()
    Dataset.objects.filter(pk=by_queryset.pk).delete()  # as the admin's bulk action or a shell does
    by_row.delete()
    with pytest.raises(RuntimeError), transaction.atomic():
        Dataset.objects.filter(pk=rolled_back.pk).delete()
        raise RuntimeError("rolled back")
    assert not default_storage.exists(by_queryset.file.name)
    assert not default_storage.exists(by_row.file.name)
    assert default_storage.exists(rolled_back.file.name) and Dataset.objects.filter(pk=rolled_back.pk).exists()


def test_the_delete_service_still_removes_the_file_and_its_derived_detections():
    from datasets import services
    from tests.factories import AnomalyDetectionFactory, DatasetFactory

    dataset = DatasetFactory()
    detection = AnomalyDetectionFactory(dataset=dataset, status="succeeded")
    detection.scores_file.save("s.npy", ContentFile(b"x"))
    files = [dataset.file.name, detection.scores_file.name]
    services.dataset_delete(user=None, dataset=dataset)
    assert not any(default_storage.exists(name) for name in files)


def processing_job(dataset, *, status="succeeded", age=timedelta(0)):
    from tests.factories import ProcessingJobFactory

    row = ProcessingJobFactory(dataset=dataset, status=status)
    when = timezone.now() - age
    ProcessingJob.objects.filter(pk=row.pk).update(created_at=when, finished_at=when if status != "running" else None)
    return row


def test_old_finished_processing_jobs_go_unless_a_dataset_came_out_of_them(settings):
    from tests.factories import DatasetFactory

    settings.RETENTION_JOBS_DAYS = 90
    source = DatasetFactory()
    made_output = processing_job(source, age=200 * DAY)
    DatasetFactory(parent=source, source_job=made_output)
    failed = processing_job(source, status="failed", age=100 * DAY)
    running = processing_job(source, status="running", age=100 * DAY)
    recent = processing_job(source, status="failed", age=DAY)

    assert retention_prune()["processing_jobs"] == 1
    assert set(ProcessingJob.objects.values_list("pk", flat=True)) == {made_output.pk, running.pk, recent.pk}
    assert not ProcessingJob.objects.filter(pk=failed.pk).exists()
