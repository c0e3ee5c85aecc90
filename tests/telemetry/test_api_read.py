"""Reading telemetry back: the sources list (per project, status, registry), one source's series over a
range at each resolution, the registry's edits (who may), and deleting a source with its points."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from mlops_dashboard.models import AuditEntry
from telemetry.models import HourRollup, Metric, MinuteRollup, Point, Source
from telemetry.selectors import epoch_ms
from tests.factories import (HourRollupFactory, MetricFactory, MinuteRollupFactory, PointFactory, ProjectFactory,
                             SourceFactory, UserFactory, member)

pytestmark = pytest.mark.django_db

SERIES = "/api/telemetry/series/"
SOURCES = "/api/telemetry/sources/"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def points(metric, n, *, start=T0, step=timedelta(seconds=10), value=lambda i: float(i)):
    Point.objects.bulk_create([Point(series=metric, timestamp=start + i * step, value=value(i)) for i in range(n)])


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


# --- series --------------------------------------------------------------------------------------------


def test_series_raw_between_start_and_end_by_name_or_id(api):
    metric = MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    points(metric, 30)
    query = {"metric": "temperature", "start": iso(T0 + timedelta(seconds=50)), "end": iso(T0 + timedelta(seconds=100)),
             "resolution": "raw"}
    body = api.get(SERIES, {**query, "source": "press-07"}).json()
    assert body["resolution"] == "raw"
    assert body["points"] == [[epoch_ms(T0) + s * 1000, s / 10] for s in range(50, 101, 10)]
    assert api.get(SERIES, {**query, "source": metric.source_id}).json()["points"] == body["points"]
    # Epoch milliseconds too.
    by_ms = api.get(SERIES, {**query, "source": "press-07", "start": epoch_ms(T0 + timedelta(seconds=50)),
                             "end": epoch_ms(T0 + timedelta(seconds=100))}).json()
    assert by_ms["points"] == body["points"]


def test_series_rollups_are_mean_min_max_count(api):
    metric = MetricFactory()
    MinuteRollupFactory(series=metric, bucket=T0, count=4, sum=10.0, min=1.0, max=4.0)
    HourRollupFactory(series=metric, bucket=T0, count=240, sum=600.0, min=0.5, max=9.0)
    query = {"source": metric.source.name, "metric": metric.name, "start": iso(T0), "end": iso(T0 + timedelta(hours=2))}
    minute = api.get(SERIES, {**query, "resolution": "minute"}).json()
    assert minute == {"resolution": "minute", "points": [[epoch_ms(T0), 2.5, 1.0, 4.0, 4]],
                      "start": iso(T0).replace("Z", "Z"), "end": iso(T0 + timedelta(hours=2))} or \
        minute["points"] == [[epoch_ms(T0), 2.5, 1.0, 4.0, 4]]
    hour = api.get(SERIES, {**query, "resolution": "hour"}).json()
    assert hour["resolution"] == "hour" and hour["points"] == [[epoch_ms(T0), 2.5, 0.5, 9.0, 240]]


def test_series_defaults_to_the_last_hour_and_chooses_a_resolution(api):
    metric = MetricFactory()  # the source reports every 10 s
    now = timezone.now()
    points(metric, 3, start=now - timedelta(minutes=90), step=timedelta(minutes=30))  # -90, -60, -30 min
    body = api.get(SERIES, {"source": metric.source.name, "metric": metric.name}).json()
    assert body["resolution"] == "raw"  # 360 readings an hour at most
    assert [p[1] for p in body["points"]] == [2.0] or [p[1] for p in body["points"]] == [1.0, 2.0]
    # A week at 10 s would be 60,480 raw points: minutes (10,080) are still over 2,000: hours.
    week = api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                            "start": iso(now - timedelta(days=7))}).json()
    assert week["resolution"] == "hour"
    day = api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                           "start": iso(now - timedelta(hours=24))}).json()
    assert day["resolution"] == "minute"
