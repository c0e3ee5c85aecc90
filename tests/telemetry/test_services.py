from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from telemetry import selectors, services, signals
from telemetry.models import Metric, MinuteRollup, Point, Source
from telemetry.store import rollups_refresh

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def reading(value, seconds=0, source="press-07", metric="temperature"):
    return services.Reading(source=source, metric=metric, timestamp=T0 + timedelta(seconds=seconds), value=value)


@pytest.mark.django_db(transaction=True)
def test_ingest_makes_sources_and_metrics_and_the_last_value_wins(user, project):
    sent = []
    signals.points_ingested.connect(lambda **kw: sent.append(kw), weak=False, dispatch_uid="t")
    try:
        n = services.points_ingest(user=user, project=project, readings=[
            reading(1.0), reading(2.0, 60), reading(3.0, 60), reading(5.0, 0, metric="power")])
    finally:
        signals.points_ingested.disconnect(dispatch_uid="t")
    assert n == 4
    source = Source.objects.get(project=project, name="press-07")
    temperature = source.metrics.get(name="temperature")
    assert [p.value for p in Point.objects.filter(series=temperature).order_by("timestamp")] == [1.0, 3.0]
    temperature.refresh_from_db()
    assert temperature.last_value == 3.0 and temperature.last_timestamp == T0 + timedelta(seconds=60)
    # A later request for an existing timestamp replaces it.
    services.points_ingest(user=user, project=project, readings=[reading(9.0, 60)])
    assert Point.objects.get(series=temperature, timestamp=T0 + timedelta(seconds=60)).value == 9.0
    assert sent and sent[0]["project_id"] == project.pk
    batch = next(b for b in sent[0]["batches"] if b.metric == "temperature")
    assert batch.points == [[selectors.epoch_ms(T0), 1.0], [selectors.epoch_ms(T0) + 60_000, 3.0]]


@pytest.mark.django_db
def test_limits_refuse_new_sources_and_metrics(user, project, settings):
    settings.TELEMETRY_MAX_SOURCES = 2
    settings.TELEMETRY_MAX_METRICS = 1
    services.points_ingest(user=user, project=project, readings=[reading(1.0, source="a")])
    with pytest.raises(ValidationError):
        services.points_ingest(user=user, project=project, readings=[reading(1.0, source="b"), reading(1.0, source="c")])
    assert not Source.objects.filter(name__in=["b", "c"]).exists()
    with pytest.raises(ValidationError):
        services.points_ingest(user=user, project=project, readings=[reading(1.0, source="a", metric="other")])
    assert Metric.objects.filter(source__name="a").count() == 1


@pytest.mark.django_db
def test_series_raw_and_rollups(user, project):
    services.points_ingest(user=user, project=project, readings=[reading(float(i), i * 20) for i in range(9)])
    metric = Metric.objects.get(name="temperature")
    raw = selectors.series(metric, start=T0, end=T0 + timedelta(minutes=5), resolution="raw")
    assert [v for _, v in raw.points] == [float(i) for i in range(9)]
    rollups_refresh([metric.pk], T0, T0 + timedelta(minutes=5))
    assert MinuteRollup.objects.count() == 3
    minute = selectors.series(metric, start=T0, end=T0 + timedelta(minutes=5), resolution="minute")
    assert minute.points[0][1:] == [1.0, 0.0, 2.0, 3]
