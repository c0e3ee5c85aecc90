"""Reading telemetry back: the sources list (per project, status, registry), one source's series over a
range at each resolution, the registry's edits (who may), and deleting a source with its points."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from mlops_dashboard.models import AuditEntry
from telemetry.models import HourRollup, Metric, MinuteRollup, Point, Source
from telemetry.selectors import epoch_ms
from tests.factories import (HourRollupFactory, MetricFactory, MinuteRollupFactory, ProjectFactory,
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
    assert minute["resolution"] == "minute" and minute["points"] == [[epoch_ms(T0), 2.5, 1.0, 4.0, 4]]
    hour = api.get(SERIES, {**query, "resolution": "hour"}).json()
    assert hour["resolution"] == "hour" and hour["points"] == [[epoch_ms(T0), 2.5, 0.5, 9.0, 240]]


def test_series_defaults_to_the_last_hour_and_chooses_a_resolution(api):
    metric = MetricFactory()  # the source reports every 10 s
    now = timezone.now()
    points(metric, 3, start=now - timedelta(minutes=90), step=timedelta(minutes=30))  # -90, -60, -30 min
    body = api.get(SERIES, {"source": metric.source.name, "metric": metric.name}).json()
    assert body["resolution"] == "raw"  # 360 readings an hour at most
    assert [p[1] for p in body["points"]] == [2.0]  # -30 min; -60 min is a few ms before the default start
    # A week at 10 s would be 60,480 raw points: minutes (10,080) are still over 2,000: hours.
    week = api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                            "start": iso(now - timedelta(days=7))}).json()
    assert week["resolution"] == "hour"
    day = api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                           "start": iso(now - timedelta(hours=24))}).json()
    assert day["resolution"] == "minute"


def test_series_a_source_faster_than_it_said_gets_a_coarser_resolution(api):
    metric = MetricFactory(source=SourceFactory(expected_interval_seconds=60))  # said: a reading a minute
    now = timezone.now().replace(microsecond=0)
    points(metric, 5000, start=now - timedelta(minutes=50), step=timedelta(milliseconds=500))  # really: 2 a second
    MinuteRollupFactory(series=metric, bucket=now.replace(second=0) - timedelta(minutes=50))
    body = api.get(SERIES, {"source": metric.source.name, "metric": metric.name}).json()
    assert body["resolution"] == "minute" and len(body["points"]) == 1
    # Asked for explicitly, raw is given in full while within TELEMETRY_MAX_SERIES_POINTS.
    assert len(api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                                "resolution": "raw"}).json()["points"]) == 5000


def test_series_past_the_row_limit_asks_for_a_coarser_resolution(api, settings):
    settings.TELEMETRY_MAX_SERIES_POINTS = 100
    metric = MetricFactory()
    points(metric, 101)
    query = {"source": metric.source.name, "metric": metric.name, "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    response = api.get(SERIES, {**query, "resolution": "raw"})
    assert response.status_code == 400
    assert "resolution=minute" in response.json()["detail"] and "100" in response.json()["detail"]
    assert len(api.get(SERIES, {**query, "end": iso(T0 + timedelta(seconds=990))}).json()["points"]) == 100


@pytest.mark.parametrize("params, field", [
    ({"metric": "temperature"}, "source"),
    ({"source": "press-07"}, "metric"),
    ({"source": "press-07", "metric": "a b"}, "metric"),
    ({"source": "press-07", "metric": "temperature", "start": "yesterday"}, "start"),
    ({"source": "press-07", "metric": "temperature", "end": "2026-13-40T00:00:00Z"}, "end"),
    ({"source": "press-07", "metric": "temperature", "start": "99999999999999999"}, "start"),
    ({"source": "press-07", "metric": "temperature", "start": "0001-01-01T00:00:00Z"}, "start"),
    ({"source": "press-07", "metric": "temperature", "resolution": "second"}, "resolution"),
    ({"source": "press-07", "metric": "temperature", "start": "2026-12-02T11:00:00Z", "end": "2026-12-02T10:00:00Z"},
     "start"),
    ({"source": "press-07", "metric": "temperature", "project": "x"}, "project"),
    ({"source": "press-07", "metric": "temperature", "end": ""}, "end"),
])
def test_series_bad_parameters_are_400_naming_them(api, params, field):
    MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    response = api.get(SERIES, params)
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()


def test_series_unknown_source_or_metric_is_404(api):
    MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    assert api.get(SERIES, {"source": "press-08", "metric": "temperature"}).status_code == 404
    response = api.get(SERIES, {"source": "press-07", "metric": "humidity"})
    assert response.status_code == 404 and "humidity" in response.json()["detail"]
    assert api.get(SERIES, {"source": "999999", "metric": "temperature"}).status_code == 404


def test_series_of_an_invisible_project_is_404(api):
    hidden = ProjectFactory(slug="hidden")
    metric = MetricFactory(source=SourceFactory(name="kiln-2", project=hidden))
    assert api.get(SERIES, {"source": "kiln-2", "metric": metric.name}).status_code == 404
    assert api.get(SERIES, {"source": metric.source_id, "metric": metric.name}).status_code == 404


def test_series_name_in_two_projects_is_400_naming_them_unless_project_or_id(client):
    alice = UserFactory()
    plant_b = ProjectFactory(slug="plant-b")
    member(alice, "viewer")
    member(alice, "viewer", plant_b)
    client.force_login(alice)
    a = MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    b = MetricFactory(source=SourceFactory(name="press-07", project=plant_b), name="temperature")
    points(a, 1, value=lambda i: 1.0)
    points(b, 1, value=lambda i: 2.0)
    query = {"metric": "temperature", "start": iso(T0 - timedelta(minutes=1)), "end": iso(T0 + timedelta(minutes=1))}
    response = client.get(SERIES, {**query, "source": "press-07"})
    assert response.status_code == 400
    assert "Default" in response.json()["detail"] and "Plant B" in response.json()["detail"]
    assert client.get(SERIES, {**query, "source": "press-07", "project": plant_b.pk}).json()["points"][0][1] == 2.0
    assert client.get(SERIES, {**query, "source": a.source_id}).json()["points"][0][1] == 1.0


def test_series_needs_a_login(client):
    assert client.get(SERIES, {"source": "press-07", "metric": "temperature"}).status_code in (401, 403)


# --- the sources list --------------------------------------------------------------------------------


def test_sources_of_the_users_projects_with_status_and_metrics(api, user):
    now = timezone.now()
    live = SourceFactory(name="press-07", expected_interval_seconds=10, last_seen=now - timedelta(seconds=20),
                         description="Press", labels={"line": "3"})
    MetricFactory(source=live, name="temperature", unit="°C", last_value=71.5, last_timestamp=T0)
    MetricFactory(source=live, name="power", unit="kW")
    SourceFactory(name="press-08", expected_interval_seconds=10, last_seen=now - timedelta(seconds=31))
    SourceFactory(name="press-09", last_seen=None)
    SourceFactory(name="mixer-1", expected_interval_seconds=60, last_seen=now - timedelta(seconds=100))  # 3× is 180 s
    SourceFactory(name="kiln-2", project=ProjectFactory(slug="hidden"))
    body = api.get(SOURCES).json()
    assert body["count"] == 4
    rows = {r["name"]: r for r in body["results"]}
    assert set(rows) == {"mixer-1", "press-07", "press-08", "press-09"}
    assert {n: r["status"] for n, r in rows.items()} == {"mixer-1": "live", "press-07": "live", "press-08": "silent",
                                                         "press-09": "silent"}
    row = rows["press-07"]
    assert row["id"] == live.pk and row["project"] == live.project_id and row["description"] == "Press"
    assert row["labels"] == {"line": "3"} and row["expected_interval_seconds"] == 10 and row["is_demo"] is False
    assert [m["name"] for m in row["metrics"]] == ["power", "temperature"]
    temperature = row["metrics"][1]
    assert temperature["unit"] == "°C" and temperature["last_value"] == 71.5
    assert temperature["last_timestamp"].startswith("2026-12-02T10:00:00")
    # Filters: status, search, project, demo.
    assert [r["name"] for r in api.get(SOURCES, {"status": "live"}).json()["results"]] == ["mixer-1", "press-07"]
    assert [r["name"] for r in api.get(SOURCES, {"status": "silent"}).json()["results"]] == ["press-08", "press-09"]
    assert [r["name"] for r in api.get(SOURCES, {"search": "PRESS-0"}).json()["results"]] == [
        "press-07", "press-08", "press-09"]
    assert api.get(SOURCES, {"project": live.project_id}).json()["count"] == 4
    assert api.get(SOURCES, {"is_demo": "true"}).json()["count"] == 0
    assert api.get(SOURCES, {"limit": 1}).json()["results"][0]["name"] == "mixer-1"
    for bad in ({"status": "asleep"}, {"project": "0"}, {"limit": "x"}, {"search": ""}):
        response = api.get(SOURCES, bad)
        assert response.status_code == 400 and next(iter(bad)) in response.json()["errors"], bad


def test_source_detail_and_an_invisible_one(api):
    source = SourceFactory(name="press-07")
    hidden = SourceFactory(name="kiln-2", project=ProjectFactory(slug="hidden"))
    assert api.get(f"{SOURCES}{source.pk}/").json()["name"] == "press-07"
    assert api.get(f"{SOURCES}{hidden.pk}/").status_code == 404
    assert api.get(SOURCES, {"project": hidden.project_id}).json()["count"] == 0


# --- the registry ---------------------------------------------------------------------------------------


def _client(client, role, *, created=False):
    someone = UserFactory()
    member(someone, role)
    source = SourceFactory(name="press-07", created_by=someone if created else None)
    MetricFactory(source=source, name="temperature")
    client.force_login(someone)
    return client, source


def test_registry_patch_by_a_maintainer_is_audited(client):
    api, source = _client(client, "maintainer")
    response = api.patch(f"{SOURCES}{source.pk}/", {"description": "Hydraulic press", "labels": {"line": "3"},
                                                    "expected_interval_seconds": 30}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "Hydraulic press" and response.json()["metrics"][0]["name"] == "temperature"
    source.refresh_from_db()
    assert (source.description, source.labels, source.expected_interval_seconds) == ("Hydraulic press", {"line": "3"}, 30)
    entry = AuditEntry.objects.get(object_type="telemetry.source", action="update")
    assert "expected_interval_seconds: 10 → 30" in entry.summary and entry.project_id == source.project_id

    response = api.patch(f"{SOURCES}{source.pk}/metrics/temperature/", {
        "unit": "K", "description": "Oil temperature", "labels": {"sensor": "pt100"}, "expected_interval_seconds": None,
        "anomaly": {"enabled": True, "direction": "up", "min_change": 5, "relative_change": 0.1, "agree": 3, "of": 4,
                    "score": 4.5, "alerts": False}}, content_type="application/json")
    assert response.status_code == 200, response.content
    metric = Metric.objects.get(source=source, name="temperature")
    assert metric.unit == "K" and metric.labels == {"sensor": "pt100"} and metric.anomaly["agree"] == 3
    assert response.json()["anomaly"] == metric.anomaly


def test_registry_patch_by_the_editor_who_created_it(client):
    api, source = _client(client, "editor", created=True)
    response = api.patch(f"{SOURCES}{source.pk}/", {"description": "mine"}, content_type="application/json")
    assert response.status_code == 200
    assert api.patch(f"{SOURCES}{source.pk}/metrics/temperature/", {"unit": "K"},
                     content_type="application/json").status_code == 200


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_registry_patch_without_the_role_is_403_naming_it(client, role):
    api, source = _client(client, role)
    for url in (f"{SOURCES}{source.pk}/", f"{SOURCES}{source.pk}/metrics/temperature/"):
        response = api.patch(url, {"description": "nope", "labels": "not an object"}, content_type="application/json")
        assert response.status_code == 403 and "maintainer" in response.json()["detail"]
    assert api.delete(f"{SOURCES}{source.pk}/").status_code == 403
    source.refresh_from_db()
    assert source.description == "" and Source.objects.filter(pk=source.pk).exists()


def test_registry_of_another_project_is_404(api):
    source = SourceFactory(name="kiln-2", project=ProjectFactory(slug="hidden"))
    MetricFactory(source=source, name="flame")
    assert api.patch(f"{SOURCES}{source.pk}/", {"description": "x"}, content_type="application/json").status_code == 404
    assert api.patch(f"{SOURCES}{source.pk}/metrics/flame/", {"unit": "x"},
                     content_type="application/json").status_code == 404
    assert api.delete(f"{SOURCES}{source.pk}/").status_code == 404
    assert Source.objects.filter(pk=source.pk).exists()


@pytest.mark.parametrize("body, field", [
    ({"expected_interval_seconds": 0}, "expected_interval_seconds"),
    ({"expected_interval_seconds": 86_401}, "expected_interval_seconds"),
    ({"labels": {"k": 3}}, "labels"),
    ({"labels": {f"k{i}": "v" for i in range(51)}}, "labels"),
    ({"labels": {"k" * 65: "v"}}, "labels"),
    ({"labels": {"k": "v" * 201}}, "labels"),
    ({"labels": ["a"]}, "labels"),
    ({"labels": {"a\u0000b": "v"}}, "labels"),
    ({"description": "x" * 2001}, "description"),
])
def test_source_registry_bad_values_are_400(api, body, field):
    source = SourceFactory(name="press-07")
    response = api.patch(f"{SOURCES}{source.pk}/", body, content_type="application/json")
    assert response.status_code == 400 and field in response.json()["errors"], response.json()
    source.refresh_from_db()
    assert source.labels == {} and source.expected_interval_seconds == 10


@pytest.mark.parametrize("anomaly, word", [
    ({"direction": "sideways"}, "direction"),
    ({"min_change": -1}, "min_change"),
    ({"min_change": "big"}, "min_change"),
    ({"agree": 5, "of": 4}, "agree"),
    ({"of": 61}, "of"),
    ({"agree": 1.5}, "agree"),
    ({"alerts": "yes"}, "alerts"),
    ({"enabled": 1}, "enabled"),
    ({"score": 0}, "score"),
    ({"window": 10}, "window"),
    ([1, 2], "object"),
])
def test_metric_anomaly_overrides_are_checked(api, anomaly, word):
    metric = MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    response = api.patch(f"{SOURCES}{metric.source_id}/metrics/temperature/", {"anomaly": anomaly},
                         content_type="application/json")
    assert response.status_code == 400 and word in response.json()["detail"], response.json()
    assert Metric.objects.get(pk=metric.pk).anomaly == {}


def test_metric_of_an_unknown_name_is_404(api):
    source = SourceFactory(name="press-07")
    assert api.patch(f"{SOURCES}{source.pk}/metrics/humidity/", {"unit": "%"},
                     content_type="application/json").status_code == 404


def test_delete_removes_the_source_metrics_points_and_rollups_only(api):
    source = SourceFactory(name="press-07")
    temperature, power = MetricFactory(source=source, name="temperature"), MetricFactory(source=source, name="power")
    for metric in (temperature, power):
        points(metric, 20)
        MinuteRollupFactory(series=metric, bucket=T0)
        HourRollupFactory(series=metric, bucket=T0)
    other = MetricFactory(source=SourceFactory(name="press-08"), name="temperature")
    points(other, 5)
    MinuteRollupFactory(series=other, bucket=T0)
    assert api.delete(f"{SOURCES}{source.pk}/").status_code == 204
    ids = [temperature.pk, power.pk]
    assert not Source.objects.filter(pk=source.pk).exists() and not Metric.objects.filter(pk__in=ids).exists()
    for model in (Point, MinuteRollup, HourRollup):
        assert not model.objects.filter(series_id__in=ids).exists(), model
    assert Point.objects.filter(series=other).count() == 5 and MinuteRollup.objects.filter(series=other).count() == 1
    entry = AuditEntry.objects.get(object_type="telemetry.source", action="delete")
    assert "2 metrics, 40 points" in entry.summary
    assert api.get(SERIES, {"source": "press-07", "metric": "temperature"}).status_code == 404


def test_series_reads_in_a_constant_few_queries(api, django_assert_num_queries):
    """Session, user, memberships, the source with its metric (one query), then the read itself (raw:
    one; rollups: the pending marks and the rows): no count before the read, no second lookup."""
    metric = MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    points(metric, 30)
    query = {"source": "press-07", "metric": "temperature", "start": iso(T0), "end": iso(T0 + timedelta(hours=1))}
    for extra, count in (({}, 5), ({"resolution": "raw"}, 5), ({"resolution": "minute"}, 6),
                         ({"resolution": "hour"}, 6), ({"source": str(metric.source_id)}, 5)):
        with django_assert_num_queries(count):
            assert api.get(SERIES, {**query, **extra}).status_code == 200


def test_series_rollup_limit_is_exact_when_the_span_allows_more(api, settings):
    """The span bounds the rollup rows; when it allows more than TELEMETRY_MAX_SERIES_POINTS, they are
    counted: a sparse long range is still answered, one really over the limit is the 400."""
    settings.TELEMETRY_MAX_SERIES_POINTS = 100
    metric = MetricFactory()
    for i in range(100):
        MinuteRollupFactory(series=metric, bucket=T0 + timedelta(minutes=2 * i))
    query = {"source": metric.source.name, "metric": metric.name, "start": iso(T0),
             "end": iso(T0 + timedelta(hours=5)), "resolution": "minute"}
    assert len(api.get(SERIES, query).json()["points"]) == 100  # 301 minutes in the span, 100 rows
    MinuteRollupFactory(series=metric, bucket=T0 + timedelta(minutes=201))
    response = api.get(SERIES, query)
    assert response.status_code == 400 and "resolution=hour" in response.json()["detail"]
    # Within the bound (61 minutes), no count is needed.
    short = api.get(SERIES, {**query, "end": iso(T0 + timedelta(hours=1))}).json()
    assert len(short["points"]) == 31


def test_series_body_times_are_as_drf_wrote_them(api):
    metric = MetricFactory()
    body = api.get(SERIES, {"source": metric.source.name, "metric": metric.name,
                            "start": "2026-12-02T10:00:00.123456Z", "end": "2026-12-02T13:00:00+02:00"}).json()
    assert body["start"] == "2026-12-02T10:00:00.123Z" and body["end"] == "2026-12-02T13:00:00+02:00"


def test_series_source_named_like_another_sources_id(api):
    """A digit reference is the source with that id first; else the one source of that name."""
    other = MetricFactory(name="temperature")
    named = MetricFactory(source=SourceFactory(name=str(other.source_id)), name="temperature")
    points(other, 1, value=lambda i: 1.0)
    points(named, 1, value=lambda i: 2.0)
    query = {"metric": "temperature", "start": iso(T0 - timedelta(minutes=1)), "end": iso(T0 + timedelta(minutes=1))}
    assert api.get(SERIES, {**query, "source": str(other.source_id)}).json()["points"][0][1] == 1.0
    lone = MetricFactory(source=SourceFactory(name="424242"), name="temperature")
    points(lone, 1, value=lambda i: 3.0)
    assert api.get(SERIES, {**query, "source": "424242"}).json()["points"][0][1] == 3.0
