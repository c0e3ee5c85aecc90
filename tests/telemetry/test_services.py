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


@pytest.mark.django_db
def test_a_known_series_costs_two_statements_and_an_older_reading_keeps_its_last_value(user, project):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.points_ingest(user=user, project=project, readings=[reading(1.0, 60), reading(2.0, 60, metric="power")])
    later = T0 + timedelta(hours=1)
    with CaptureQueriesContext(connection) as queries:
        services.points_ingest(user=user, project=project, now=later, readings=[
            reading(0.5, 0), reading(3.0, 120, metric="power")])
    statements = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    if connection.vendor == "postgresql":  # the lookup, then the points with last values and last_seen
        assert len(statements) <= 2, statements
    temperature, power = (Metric.objects.get(name=name) for name in ("temperature", "power"))
    assert (temperature.last_value, temperature.last_timestamp) == (1.0, T0 + timedelta(seconds=60))
    assert (power.last_value, power.last_timestamp) == (3.0, T0 + timedelta(seconds=120))
    assert Point.objects.get(series=temperature, timestamp=T0).value == 0.5
    assert Source.objects.get(name="press-07").last_seen == later


@pytest.mark.django_db(transaction=True)
def test_a_series_deleted_and_made_again_gets_the_points_not_the_old_id(user, project):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.points_ingest(user=user, project=project, readings=[reading(1.0), reading(1.0, metric="power")])
    with CaptureQueriesContext(connection) as queries:  # a known series: one statement on PostgreSQL
        services.points_ingest(user=user, project=project, readings=[reading(2.0, 60), reading(2.0, 60, metric="power")])
    if connection.vendor == "postgresql":
        assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    old = Metric.objects.get(name="temperature")
    services.metric_delete(user=user, metric=old)
    services.points_ingest(user=user, project=project, readings=[reading(3.0, 120), reading(3.0, 120, metric="power")])
    new = Metric.objects.get(name="temperature")
    assert new.pk != old.pk
    assert not Point.objects.filter(series_id=old.pk).exists()
    assert [(p.timestamp, p.value) for p in Point.objects.filter(series=new)] == [(T0 + timedelta(seconds=120), 3.0)]
    assert (new.last_value, new.last_timestamp) == (3.0, T0 + timedelta(seconds=120))
    assert Point.objects.filter(series__name="power").count() == 3
    # The whole source deleted and sent again: made anew, under the same name.
    source = Source.objects.get(name="press-07")
    services.source_delete(user=user, source=source)
    services.points_ingest(user=user, project=project, readings=[reading(4.0, 180)])
    again = Source.objects.get(name="press-07")
    assert again.pk != source.pk
    assert [p.value for p in Point.objects.filter(series__source=again)] == [4.0]
    assert Point.objects.count() == 1


def _stored(metric_name: str) -> dict:
    return {p.timestamp: p.value for p in Point.objects.filter(series__name=metric_name)}


@pytest.mark.parametrize("in_transaction", [True, False], ids=["in-a-transaction", "autocommit"])
def test_a_reading_stored_already_though_newer_than_the_last_value_is_replaced(request, user, project,
                                                                               in_transaction):
    """A reading newer than its series' last value is written as new. When it was stored already (an
    import under way, a concurrent request), the write is still an upsert: its value replaced, the
    rest of the batch written, and a caller's transaction left usable."""
    request.getfixturevalue("db" if in_transaction else "transactional_db")
    from telemetry.models import RollupPending

    services.points_ingest(user=user, project=project, readings=[reading(1.0, 0), reading(2.0, 60)])
    assert services.points_ingest(user=user, project=project, readings=[reading(1.5, 0)]) == 1  # sent again
    Metric.objects.update(last_value=None, last_timestamp=None)  # as an import leaves it while it writes
    RollupPending.objects.all().delete()
    for n in range(2):  # known series on the second round (the one-statement path)
        services.points_ingest(user=user, project=project, readings=[
            reading(10.0 + n, 60), reading(20.0 + n, 120), reading(30.0 + n, 120, metric="power")])
    assert _stored("temperature") == {T0: 1.5, T0 + timedelta(seconds=60): 11.0, T0 + timedelta(seconds=120): 21.0}
    assert _stored("power") == {T0 + timedelta(seconds=120): 31.0}
    temperature = Metric.objects.get(name="temperature")
    assert (temperature.last_value, temperature.last_timestamp) == (21.0, T0 + timedelta(seconds=120))
    marked = {(r.series_id, r.bucket) for r in RollupPending.objects.all()}
    assert {(temperature.pk, T0 + timedelta(minutes=m)) for m in (1, 2)} <= marked
    assert Source.objects.filter(name="press-07").exists()  # the caller's transaction still answers


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_writing_the_same_times_all_succeed_and_one_value_wins(user, project):
    """Four threads send the same readings of one series at once, round after round, each with its
    own values: every request is stored whole (no error from the race), and each reading holds one of
    the values sent for it."""
    import threading

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one request at a time")
    services.points_ingest(user=user, project=project, readings=[reading(0.0, 0)])
    rounds, errors = 20, []
    barrier = threading.Barrier(4)

    def send(k):
        try:
            for r in range(rounds):
                barrier.wait(timeout=60)
                services.points_ingest(user=user, project=project, readings=[
                    reading(1000.0 * k + r, 10 * r + s) for s in range(1, 11)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
            barrier.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    stored = _stored("temperature")
    assert len(stored) == 1 + 10 * rounds
    for r in range(rounds):
        for s in range(1, 11):
            moment = T0 + timedelta(seconds=10 * r + s)
            assert stored[moment] in {1000.0 * k + r for k in range(4)}, (r, s, stored[moment])
