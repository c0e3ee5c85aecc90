"""Every API list answers with a constant number of queries, whatever the number of rows (no query
per row: lineage, last runs, users and the like come with the page)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories as f


def _datasets(n, user):
    parent = f.DatasetFactory(created_by=user)
    for i in range(n):
        f.DatasetFactory(name=f"d{i}", created_by=f.UserFactory(), parent=parent if i % 2 else None)


def _processing_jobs(n, user):
    dataset = f.DatasetFactory()
    for _ in range(n):
        f.ProcessingJobFactory(dataset=dataset, created_by=f.UserFactory())


def _training_jobs(n, user):
    dataset = f.DatasetFactory(target_column="survived")
    for _ in range(n):
        job = f.TrainingJobFactory(dataset=dataset, created_by=f.UserFactory())
        f.ModelVersionFactory(name=f"m{job.pk}", dataset=dataset, training_job=job)


def _models(n, user):
    dataset = f.DatasetFactory(target_column="survived")
    for _ in range(n):
        job = f.TrainingJobFactory(dataset=dataset, created_by=f.UserFactory())
        f.ModelVersionFactory(name=f"m{job.pk}", dataset=dataset, training_job=job)


def _deployments(n, user):
    for _ in range(n):
        previous = f.ModelVersionFactory(name="m")
        f.DeploymentFactory(model_version=f.ModelVersionFactory(name=f"m{previous.pk}", status="active"),
                            previous=previous, deployed_by=f.UserFactory())


def _pipelines(n, user):
    dataset = f.DatasetFactory(target_column="survived")
    for i in range(n):
        pipeline = f.PipelineFactory(dataset=dataset, created_by=f.UserFactory())
        f.StepRunFactory(run=f.PipelineRunFactory(pipeline=pipeline, created_by=user))


def _pipeline_runs(n, user):
    pipeline = f.PipelineFactory()
    for _ in range(n):
        f.StepRunFactory(run=f.PipelineRunFactory(pipeline=pipeline, created_by=f.UserFactory()))


def _activity(n, user):
    for _ in range(n):
        f.ActivityFactory(user=f.UserFactory())


def _alerts(n, user):
    for i in range(n):
        f.AlertFactory(status="acknowledged" if i % 2 else "open", acknowledged_by=f.UserFactory() if i % 2 else None)


def _alert_rules(n, user):
    for _ in range(n):
        f.AlertRuleFactory()


def _anomalies(n, user):
    for _ in range(n):
        f.AnomalyFactory()


def _detections(n, user):
    dataset = f.DatasetFactory()
    for _ in range(n):
        f.AnomalyDetectionFactory(dataset=dataset, created_by=f.UserFactory())


def _audit(n, user):
    from mlops_dashboard.audit import audit_record

    project = f.ProjectFactory()
    for _ in range(n):
        audit_record(user=f.UserFactory(), action="update", project=project, object_repr="x", summary="a: 1 → 2")
        audit_record(user=f.UserFactory(), action="login")


def _telemetry_sources(n, user):
    for i in range(n):
        source = f.SourceFactory(expected_interval_seconds=10 + i % 3, created_by=f.UserFactory())
        f.MetricFactory(source=source, name="temperature")
        f.MetricFactory(source=source, name="power", unit="kW")


LISTS = {
    "/api/datasets/": _datasets,
    "/api/processing-jobs/": _processing_jobs,
    "/api/training-jobs/": _training_jobs,
    "/api/models/": _models,
    "/api/deployments/": _deployments,
    "/api/pipelines/": _pipelines,
    "/api/pipeline-runs/": _pipeline_runs,
    "/api/activity/": _activity,
    "/api/alerts/": _alerts,
    "/api/alert-rules/": _alert_rules,
    "/api/anomalies/": _anomalies,
    "/api/anomaly/detect/": _detections,
    "/api/audit/": _audit,
    "/api/telemetry/sources/": _telemetry_sources,
}


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"limit": 100})
    assert response.status_code == 200, response.content[:500]
    return len(queries)


@pytest.mark.parametrize("url", LISTS)
def test_list_queries_do_not_grow_with_rows(url, client, staff_user, django_assert_max_num_queries):
    client.force_login(staff_user)
    make = LISTS[url]
    make(5, staff_user)
    at_five = _queries(client, url)
    make(45, staff_user)
    with django_assert_max_num_queries(at_five):
        response = client.get(url, {"limit": 100})
    assert response.status_code == 200
    assert response.json()["count"] >= 50
