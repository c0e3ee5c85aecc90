"""Rollups against a brute-force computation over random data with duplicates and late points, on
whichever database the run uses (SQLite by default, PostgreSQL with DATABASE_URL)."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from telemetry import selectors, services, store
from telemetry.models import HourRollup, Metric, MinuteRollup, Point, RollupPending

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
SPAN = timedelta(hours=3)


def brute(values: dict, size: timedelta) -> dict:
    """{(metric, bucket): (count, sum, min, max)} of the final values."""
    groups: dict = {}
    for (metric, moment), value in values.items():
        stamp = moment.timestamp()
        bucket = datetime.fromtimestamp(stamp - stamp % size.total_seconds(), tz=UTC)
        groups.setdefault((metric, bucket), []).append(value)
    return {key: (len(v), sum(v), min(v), max(v)) for key, v in groups.items()}


def stored(model, names: dict) -> dict:
    return {(names[r.series_id], r.bucket): (r.count, r.sum, r.min, r.max) for r in model.objects.all()}


def same(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key, (n, s, lo, hi) in want.items():
        assert got[key][0] == n and got[key][2:] == (lo, hi), key
        assert got[key][1] == pytest.approx(s, rel=1e-9, abs=1e-9), key


def random_batches(rng: random.Random, n_batches: int):
    """Batches of readings of two metrics: random times within SPAN (whole and fractional seconds),
    repeats of a timestamp inside a batch and across batches, and later batches reaching back in time."""
    seen: list = []
    for b in range(n_batches):
        batch = []
        for _ in range(rng.randint(1, 120)):
            metric = rng.choice(["temperature", "power"])
            if seen and rng.random() < 0.15:  # a timestamp written before: the last value wins
                metric, moment = rng.choice(seen)
            else:
                # Late points: every batch may reach anywhere in the span, the newest near its end.
                reach = SPAN * (b + 1) / n_batches
                moment = T0 + timedelta(seconds=rng.uniform(0, reach.total_seconds()))
                moment = moment.replace(microsecond=rng.choice([0, moment.microsecond // 1000 * 1000]))
                seen.append((metric, moment))
            batch.append(services.Reading(source="press-07", metric=metric, timestamp=moment,
                                          value=round(rng.uniform(-50, 150), 3)))
            if rng.random() < 0.05:  # the same key twice in a batch
                batch.append(services.Reading(source="press-07", metric=metric, timestamp=moment,
                                              value=round(rng.uniform(-50, 150), 3)))
        yield batch


def ingest_all(user, project, seed: int, refresh_every: int = 3):
    rng = random.Random(seed)
    final: dict = {}
    for k, batch in enumerate(random_batches(rng, 12)):
        services.points_ingest(user=user, project=project, readings=batch)
        for r in batch:
            final[(r.metric, r.timestamp)] = r.value
        if k % refresh_every == 0:
            store.rollups_refresh_pending()
    return final


def chart(metric, resolution) -> dict:
    points = selectors.series(metric, start=T0 - timedelta(hours=1), end=T0 + SPAN + timedelta(hours=1),
                              resolution=resolution).points
    return {(metric.name, datetime.fromtimestamp(ms / 1000, tz=UTC)): (n, mean * n, lo, hi)
            for ms, mean, lo, hi, n in points}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("seed", [1, 2])
def test_refreshed_rollups_match_a_brute_force_computation(user, project, seed):
    final = ingest_all(user, project, seed)
    names = dict(Metric.objects.values_list("pk", "name"))
    assert RollupPending.objects.exists()
    # Before the refresh of the last batches the selector is already right (marked minutes from raw).
    for metric in Metric.objects.all():
        want_minutes = {k: v for k, v in brute(final, store.MINUTE).items() if k[0] == metric.name}
        want_hours = {k: v for k, v in brute(final, store.HOUR).items() if k[0] == metric.name}
        same(chart(metric, "minute"), want_minutes)
        same(chart(metric, "hour"), want_hours)
    assert store.rollups_refresh_pending() > 0
    assert not RollupPending.objects.exists()
    same(stored(MinuteRollup, names), brute(final, store.MINUTE))
    same(stored(HourRollup, names), brute(final, store.HOUR))
    for metric in Metric.objects.all():
        same(chart(metric, "minute"), {k: v for k, v in brute(final, store.MINUTE).items() if k[0] == metric.name})


@pytest.mark.django_db(transaction=True)
def test_a_range_refresh_recomputes_everything_and_clears_the_marks(user, project):
    final = ingest_all(user, project, seed=3, refresh_every=100)
    names = dict(Metric.objects.values_list("pk", "name"))
    MinuteRollup.objects.all().delete()
    HourRollup.objects.all().delete()
    store.rollups_refresh(list(names), T0, T0 + SPAN)
    assert not RollupPending.objects.exists()
    same(stored(MinuteRollup, names), brute(final, store.MINUTE))
    same(stored(HourRollup, names), brute(final, store.HOUR))


@pytest.mark.django_db
def test_a_late_point_makes_its_minute_and_hour_stale_until_refreshed(user, project):
    readings = [services.Reading("m1", "t", T0 + timedelta(seconds=10 * i), float(i)) for i in range(30)]
    services.points_ingest(user=user, project=project, readings=readings)
    assert store.rollups_refresh_pending() == 5
    metric = Metric.objects.get(name="t")
    late = services.Reading("m1", "t", T0 + timedelta(seconds=5), 100.0)
    services.points_ingest(user=user, project=project, readings=[late])
    # Stored: stale; read: fresh.
    assert MinuteRollup.objects.get(series=metric, bucket=T0).max == 5.0
    first = selectors.series(metric, start=T0, end=T0 + timedelta(minutes=10), resolution="minute").points[0]
    assert first[2:] == [0.0, 100.0, 7]
    hour = selectors.series(metric, start=T0, end=T0 + timedelta(hours=1), resolution="hour").points
    assert hour == [[selectors.epoch_ms(T0), (sum(range(30)) + 100.0) / 31, 0.0, 100.0, 31]]
    assert store.rollups_refresh_pending() == 1
    assert MinuteRollup.objects.get(series=metric, bucket=T0).max == 100.0
    assert HourRollup.objects.get(series=metric, bucket=T0).count == 31


@pytest.mark.django_db
def test_points_keep_their_exact_time_and_value(user, project):
    moments = [datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), T0.replace(microsecond=123_457),
               datetime(2099, 1, 1, 0, 0, 0, 1, tzinfo=UTC)]
    values = [0.1 + 0.2, 1e-300, -123456.789012345]
    services.points_ingest(user=user, project=project, readings=[
        services.Reading("m1", "t", m, v) for m, v in zip(moments, values, strict=True)])
    stored = [(p.timestamp, p.value) for p in Point.objects.order_by("timestamp")]
    assert stored == list(zip(moments, values, strict=True))
