"""What one pipeline may ask of the workers: a schedule no more often than PIPELINE_MIN_SCHEDULE_MINUTES,
at most 20 steps, at most 10 concurrent runs. Each limit is a clear 400 that saves nothing."""

from __future__ import annotations

import pytest
from celery.schedules import crontab
from django_celery_beat.models import PeriodicTask

from pipelines.models import Pipeline
from pipelines.schedules import min_gap_minutes

TRAIN = {"kind": "train_model", "options": {"algorithm": "sgd", "target_column": "survived", "epochs": 3}}


def cron(expression: str):
    minute, hour, day_of_month, month_of_year, day_of_week = expression.split()
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)


@pytest.mark.parametrize("expression, gap", [
    ("* * * * *", 1),
    ("*/5 * * * *", 5),
    ("*/7 * * * *", 4),  # :56 then :00 of the next hour
    ("0,57 * * * *", 3),
    ("0 3 * * *", 1440),
    ("0,58 23,0 * * *", 2),  # 23:58 then 00:00 of the next day
    ("59 23,0 * * 1", 1380),  # only Mondays: 00:59 and 23:59, never the next day
    ("0 0 29 2 *", 2880),  # once in four years: a lower bound, never a short gap
])
def test_the_shortest_gap_between_two_firings(expression, gap):
    assert min_gap_minutes(cron(expression)) == gap


@pytest.fixture
def api(client, user, db):
    client.force_login(user)
    return client


@pytest.fixture
def dataset(db):
    from tests.factories import DatasetFactory

    return DatasetFactory(target_column="survived")


def create(api, dataset, **fields):
    body = {"name": "nightly", "dataset": dataset.pk, "steps": [{"kind": "validate_dataset"}, TRAIN], **fields}
    return api.post("/api/pipelines/", body, content_type="application/json")


def errors(response, field):
    assert response.status_code == 400, response.content
    assert response["Content-Type"].startswith("application/problem+json")
    return " ".join(response.json()["errors"][field])


@pytest.mark.parametrize("schedule", ["* * * * *", "*/2 * * * *", "0-4 3 * * *", "0,58 23,0 * * *"])
def test_a_schedule_firing_more_often_than_the_minimum_is_400(api, dataset, schedule):
    text = errors(create(api, dataset, schedule=schedule), "schedule")
    assert "at most once every 5 minutes" in text and "PIPELINE_MIN_SCHEDULE_MINUTES" in text
    assert not Pipeline.objects.exists() and not PeriodicTask.objects.exists()


def test_the_minimum_is_a_setting(api, dataset, settings):
    assert create(api, dataset, schedule="*/5 * * * *").status_code == 201
    settings.PIPELINE_MIN_SCHEDULE_MINUTES = 60
    response = create(api, dataset, name="hourly-ish", schedule="*/30 * * * *")
    text = errors(response, "schedule")
    assert "every 30 minutes" in text and "once every 60 minutes" in text
    settings.PIPELINE_MIN_SCHEDULE_MINUTES = 0  # no limit
    assert create(api, dataset, name="every-minute", schedule="* * * * *").status_code == 201


def test_at_most_20_steps(api, dataset):
    assert create(api, dataset, steps=[{"kind": "validate_dataset"}] * 20).status_code == 201
    text = errors(create(api, dataset, name="long", steps=[{"kind": "validate_dataset"}] * 21), "steps")
    assert "at most 20 steps" in text
    assert Pipeline.objects.count() == 1


def test_at_most_10_concurrent_runs(api, dataset):
    assert create(api, dataset, max_concurrent_runs=10).status_code == 201
    assert "less than or equal to 10" in errors(create(api, dataset, name="wide", max_concurrent_runs=11),
                                                "max_concurrent_runs")
    pk = Pipeline.objects.get().pk
    for change in ({"max_concurrent_runs": 11}, {"schedule": "*/1 * * * *"},
                   {"steps": [{"kind": "validate_dataset"}] * 21}):
        response = api.patch(f"/api/pipelines/{pk}/", change, content_type="application/json")
        assert response.status_code == 400, (change, response.content)
    pipeline = Pipeline.objects.get()
    assert (pipeline.max_concurrent_runs, pipeline.schedule, len(pipeline.steps)) == (10, "", 2)


def test_the_default_limit_from_the_environment_is_clamped(settings, dataset, user):
    from pipelines import services

    settings.PIPELINE_MAX_CONCURRENT_RUNS = 50
    pipeline = services.pipeline_create(user=user, name="clamped", dataset=dataset, steps=[{"kind": "validate_dataset"}])
    assert pipeline.max_concurrent_runs == 10
