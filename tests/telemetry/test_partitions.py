"""Time partitions (PostgreSQL only) and retention per resolution (both databases)."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from mlops_dashboard import retention
from telemetry import partitions, services, store
from telemetry.models import HourRollup, Metric, MinuteRollup, Point
from telemetry.partitions import HOURS, MINUTES, POINTS
from tests.factories import HourRollupFactory, MinuteRollupFactory, PointFactory

NOW = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)
postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'",
                                     reason="partitions exist on PostgreSQL only")


def names(table):
    return [name for name, _, _ in partitions.partitions(table)]


def partition_of(series_id, moment) -> str:
    with connection.cursor() as cursor:
        cursor.execute('SELECT tableoid::regclass::text FROM telemetry_point WHERE series_id = %s AND "timestamp" = %s',
                       [series_id, moment])
        return cursor.fetchone()[0]


def ingest(user, project, *moments):
    services.points_ingest(user=user, project=project,
                           readings=[services.Reading("press-07", "temperature", m, 1.0) for m in moments])
    return Metric.objects.get(name="temperature")


@postgresql_only
@pytest.mark.django_db
def test_the_coming_partitions_are_made_once(settings):
    settings.TELEMETRY_PARTITIONS_AHEAD_DAYS = 7
    made = partitions.partitions_maintain(now=NOW)["created"]
    days = [f"telemetry_point_p{NOW + timedelta(days=d):%Y%m%d}" for d in range(8)]
    assert [n for n in names(POINTS) if n in days] == days
    # Weeks from Monday (2026-11-30), months from the first.
    assert {"telemetry_minuterollup_p20261130", "telemetry_minuterollup_p20261207"} <= set(names(MINUTES))
    assert "telemetry_hourrollup_p20261201" in names(HOURS)
    assert set(days) <= set(made)
    assert partitions.partitions_maintain(now=NOW)["created"] == []


@postgresql_only
@pytest.mark.django_db
def test_points_far_in_the_past_or_future_are_stored_and_move_into_their_partition(user, project, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 0  # kept forever: only partitions are made here
    partitions.partitions_maintain(now=NOW)
    old, future, today = datetime(2019, 3, 1, tzinfo=UTC), datetime(2027, 6, 1, 12, tzinfo=UTC), NOW
    metric = ingest(user, project, old, future, today)
    assert Point.objects.filter(series=metric).count() == 3
    assert partition_of(metric.pk, old) == "telemetry_point_default"
    assert partition_of(metric.pk, future) == "telemetry_point_default"
    assert partition_of(metric.pk, today) == f"telemetry_point_p{NOW:%Y%m%d}"
    # When its day comes near, the future point moves into the new partition; nothing is lost.
    partitions.partitions_maintain(now=future - timedelta(days=2))
    assert partition_of(metric.pk, future) == "telemetry_point_p20270601"
    assert Point.objects.filter(series=metric).count() == 3
    # Rollups of odd dates work too.
    store.rollups_refresh_pending()
    assert MinuteRollup.objects.filter(series=metric).count() == 3


@postgresql_only
@pytest.mark.django_db
def test_expired_partitions_are_dropped_whole_and_the_default_partition_pruned(user, project, settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 30
    settings.TELEMETRY_MINUTE_RETENTION_DAYS = 90
    settings.TELEMETRY_HOUR_RETENTION_DAYS = 730
    expired_day = NOW - timedelta(days=40)
    boundary_day = NOW - timedelta(days=30)  # partly inside the retention: kept whole
    for day in (expired_day, boundary_day):
        partitions.partition_create(POINTS, day)
    partitions.partition_create(MINUTES, NOW - timedelta(days=120))
    metric = ingest(user, project, expired_day, boundary_day.replace(hour=1), datetime(2019, 1, 1, tzinfo=UTC),
                    NOW - timedelta(days=1))
    MinuteRollupFactory(series=metric, bucket=NOW - timedelta(days=120))
    MinuteRollupFactory(series=metric, bucket=NOW - timedelta(days=10))
    HourRollupFactory(series=metric, bucket=NOW - timedelta(days=800))
    HourRollupFactory(series=metric, bucket=NOW - timedelta(days=100))
    result = partitions.partitions_maintain(now=NOW)
    assert f"telemetry_point_p{expired_day:%Y%m%d}" not in names(POINTS)
    assert f"telemetry_point_p{boundary_day:%Y%m%d}" in names(POINTS)
    assert "telemetry_minuterollup_p20260803" not in names(MINUTES)
    assert sorted(p.timestamp for p in Point.objects.filter(series=metric)) == [
        boundary_day.replace(hour=1), NOW - timedelta(days=1)]
    assert [r.bucket for r in MinuteRollup.objects.filter(series=metric)] == [NOW - timedelta(days=10)]
    assert [r.bucket for r in HourRollup.objects.filter(series=metric)] == [NOW - timedelta(days=100)]
    assert result["removed"]["telemetry_point"] >= 1


@pytest.mark.django_db
def test_retention_deletes_expired_rows_of_each_resolution(settings):
    settings.TELEMETRY_RAW_RETENTION_DAYS = 2
    settings.TELEMETRY_MINUTE_RETENTION_DAYS = 5
    settings.TELEMETRY_HOUR_RETENTION_DAYS = 0  # forever
    settings.RETENTION_BATCH_SIZE = 3  # several batches
    now = datetime.now(UTC).replace(microsecond=0)
    old = [PointFactory(timestamp=now - timedelta(days=3, minutes=i)) for i in range(7)]
    kept = PointFactory(series=old[0].series, timestamp=now - timedelta(days=1))
    MinuteRollupFactory(bucket=now - timedelta(days=6))
    minute = MinuteRollupFactory(bucket=now - timedelta(days=4))
    HourRollupFactory(bucket=now - timedelta(days=2000))
    results = retention.prune_all(now=now)
    assert results["telemetry_points"] == 7
    assert list(Point.objects.all()) == [kept]
    assert list(MinuteRollup.objects.all()) == [minute]
    assert HourRollup.objects.count() == 1 and "telemetry_hours" not in results
    # The beat task applies the same retention (nothing left to remove).
    assert partitions.partitions_maintain(now=now)["removed"].get("telemetry_point", 0) == 0
