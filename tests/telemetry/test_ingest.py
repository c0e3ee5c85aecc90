"""POST /api/telemetry/: validation (a bad point names its index and field, and nothing is stored),
limits, projects and roles, token scopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mlops_dashboard.tokens import api_token_create
from telemetry.models import Metric, Point, Source
from tests.factories import ProjectFactory, UserFactory, member

URL = "/api/telemetry/"
T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)

pytestmark = pytest.mark.django_db


def point(value=71.3, timestamp="2026-12-02T10:00:00Z", source="press-07", metric="temperature", **extra):
    out = {"source": source, "metric": metric, "value": value, "timestamp": timestamp, **extra}
    return {k: v for k, v in out.items() if v is not ...}


def send(client, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def editor(project):
    carol = UserFactory(username="carol")
    member(carol, "editor", project)
    return carol


@pytest.fixture
def api(client, editor):
    client.force_login(editor)
    return client


def test_url_name():
    assert reverse("api-telemetry-ingest") == URL


def test_ingest_stores_points_and_answers_202(api, project):
    response = send(api, {"project": project.pk, "points": [
        point(71.3), point(72.0, "2026-12-02T10:01:00+01:00"), point(5.5, T0_MS, metric="power")]})
    assert response.status_code == 202, response.content
    assert response.json() == {"accepted": 3}
    source = Source.objects.get(project=project, name="press-07")
    temperature = source.metrics.get(name="temperature")
    assert [(p.timestamp, p.value) for p in Point.objects.filter(series=temperature).order_by("timestamp")] == [
        (T0 - timedelta(minutes=59), 72.0), (T0, 71.3)]
    power = source.metrics.get(name="power")
    assert Point.objects.get(series=power).timestamp == T0


def test_project_is_optional_for_an_editor_of_one_project(api, project):
    response = send(api, {"points": [point()]})
    assert response.status_code == 202, response.content
    assert Source.objects.get().project == project


def test_timestamps_iso_naive_epoch_ms_float_and_missing(api, project):
    before = timezone.now()
    response = send(api, {"points": [
        point(1.0, "2026-12-02T10:00:00", metric="naive"),
        point(2.0, T0_MS + 0.5, metric="float_ms"),
        point(3.0, ..., metric="missing"),
        point(4.0, None, metric="null"),
    ]})
    assert response.status_code == 202, response.content
    after = timezone.now()
    stamp = {m.name: Point.objects.get(series=m).timestamp for m in Metric.objects.all()}
    assert stamp["naive"] == T0
    assert stamp["float_ms"] == T0 + timedelta(microseconds=500)
    assert before <= stamp["missing"] <= after
    assert stamp["missing"] == stamp["null"]  # one server time for the whole request


def test_the_last_value_wins(api, project):
    response = send(api, {"points": [point(1.0), point(2.0), point(3.0, T0_MS), point(4.0, "2026-12-02T11:00:00Z")]})
    assert response.status_code == 202
    assert response.json() == {"accepted": 4}
    metric = Metric.objects.get()
    assert sorted((p.timestamp, p.value) for p in Point.objects.filter(series=metric)) == [
        (T0, 3.0), (T0 + timedelta(hours=1), 4.0)]
    metric.refresh_from_db()
    assert (metric.last_value, metric.last_timestamp) == (4.0, T0 + timedelta(hours=1))
    # A later request replaces a stored reading.
    assert send(api, {"points": [point(9.0)]}).status_code == 202
    assert Point.objects.get(series=metric, timestamp=T0).value == 9.0


def _good(n=20):
    return [point(float(i), T0_MS + i * 1000) for i in range(n)]


BAD_POINTS = [
    ("source", {"source": "press 07"}, "name of"),
    ("source", {"source": ""}, "name of"),
    ("source", {"source": "x" * 101}, "name of"),
    ("source", {"source": 7}, "name of"),
    ("source", {"source": ["press-07"]}, "name of"),
    ("metric", {"metric": {"name": "t"}}, "name of"),
    ("source", {"source": ...}, "Required"),
    ("metric", {"metric": "temp/°C"}, "name of"),
    ("metric", {"metric": ...}, "Required"),
    ("value", {"value": "71.3"}, "A number"),
    ("value", {"value": True}, "A number"),
    ("value", {"value": None}, "Required"),
    ("value", {"value": ...}, "Required"),
    ("value", {"value": 10**400}, "out of range"),
    ("timestamp", {"timestamp": "yesterday"}, "ISO 8601"),
    ("timestamp", {"timestamp": "1999-12-31T23:00:00Z"}, "Before 2000"),
    ("timestamp", {"timestamp": "9999-12-31T23:59:59-05:00"}, "Out of range"),
    ("timestamp", {"timestamp": "2900-01-01T00:00:00Z"}, "future"),
    ("timestamp", {"timestamp": 1_733_000_000}, "epoch seconds"),
    ("timestamp", {"timestamp": 10**20}, "future"),
    ("timestamp", {"timestamp": True}, "ISO 8601"),
    ("timestamp", {"timestamp": [2026, 12, 2]}, "ISO 8601"),
]


@pytest.mark.parametrize(("field", "change", "says"), BAD_POINTS, ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_POINTS)])
def test_a_bad_point_is_named_by_index_and_field_and_nothing_is_stored(api, project, field, change, says):
    points = _good()
    points[17] = {k: v for k, v in {**points[17], **change}.items() if v is not ...}
    response = send(api, {"project": project.pk, "points": points})
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["detail"].startswith(f"points[17].{field}: "), body
    assert says in body["detail"], body
    assert list(body["errors"]["points"]["17"]) == [field]
    assert not Point.objects.exists() and not Source.objects.exists()


def test_non_finite_values_are_refused(api, project):
    # JSON has no NaN, but Python's json (and many clients) write it: the parser may take it, the check not.
    body = '{"points": [{"source": "a", "metric": "b", "value": NaN}]}'
    response = api.post(URL, data=body, content_type="application/json")
    assert response.status_code == 400
    assert not Point.objects.exists()


@pytest.mark.parametrize("body", [[], "text", {"points": "many"}, {"points": [7]}, {"points": []}, {}])
def test_a_malformed_body_is_a_400(api, project, body):
    response = send(api, body)
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert not Source.objects.exists()


def test_invalid_json_is_a_400(api):
    response = api.post(URL, data=b'{"points": [', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is not valid JSON")


def test_more_than_the_limit_is_a_413(api, project, settings):
    settings.TELEMETRY_MAX_POINTS = 5
    response = send(api, {"points": _good(6)})
    assert response.status_code == 413
    body = response.json()
    assert body["status"] == 413 and "TELEMETRY_MAX_POINTS" in body["detail"]
    assert response["Content-Type"].startswith("application/problem+json")
    assert not Point.objects.exists()


def test_the_body_limit_fits_the_largest_batch(settings):
    from mlops_dashboard.request_bodies import route_for

    big = {"project": 2**31, "points": [point(-1.2345678901234567e-300, "2026-12-02T10:00:00.123456+00:00",
                                              "s" * 100, "m" * 100) for _ in range(settings.TELEMETRY_MAX_POINTS)]}
    assert len(json.dumps(big)) < route_for(URL).max_body
    assert route_for(URL).max_body > settings.DATA_UPLOAD_MAX_MEMORY_SIZE


@pytest.mark.parametrize("project_id", [999_999, 2**70, 0])
def test_an_unknown_project_is_a_404(api, project_id):
    response = send(api, {"project": project_id, "points": [point()]})
    assert response.status_code == 404
    assert not Source.objects.exists()


def test_a_project_the_caller_cannot_see_is_a_404(api):
    other = ProjectFactory(slug="elsewhere")
    response = send(api, {"project": other.pk, "points": [point()]})
    assert response.status_code == 404
    assert not Source.objects.exists()


def test_a_bad_project_id_is_a_400(api):
    for bad in ("three", True, [3], {"id": 3}):
        response = send(api, {"project": bad, "points": [point()]})
        assert response.status_code == 400, (bad, response.content)
        assert "project" in response.json()["errors"]


def test_several_projects_without_project_is_a_400_naming_them(api, editor, project):
    second = member(editor, "editor", ProjectFactory(slug="second"))
    response = send(api, {"points": [point()]})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert f"{project.pk} (" in detail and f"{second.pk} (" in detail
    assert not Source.objects.exists()


def test_a_viewer_is_refused_naming_the_role(client, project):
    viewer = UserFactory(username="vera")
    member(viewer, "viewer", project)
    client.force_login(viewer)
    response = send(client, {"project": project.pk, "points": [point()]})
    assert response.status_code == 403
    assert "editor" in response.json()["detail"]
    assert not Source.objects.exists()


def test_anonymous_is_a_401(client):
    assert send(client, {"points": [point()]}).status_code == 401


def test_limits_on_sources_and_metrics_are_400(api, project, settings):
    settings.TELEMETRY_MAX_SOURCES = 2
    settings.TELEMETRY_MAX_METRICS = 2
    response = send(api, {"points": [point(source=s) for s in ("a", "b", "c")]})
    assert response.status_code == 400
    assert "TELEMETRY_MAX_SOURCES" in response.json()["detail"]
    response = send(api, {"points": [point(metric=m) for m in ("a", "b", "c")]})
    assert response.status_code == 400
    assert "TELEMETRY_MAX_METRICS" in response.json()["detail"]
    assert not Point.objects.exists()


def _token(user, scope, project=None):
    return api_token_create(user=user, name=scope, scope=scope, project=project)[1]


@pytest.mark.parametrize("scope", ["telemetry", "all"])
def test_a_telemetry_or_all_token_may_ingest(client, editor, project, scope):
    key = _token(editor, scope)
    response = send(client, {"points": [point()]}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 202, response.content
    assert Point.objects.count() == 1


def test_a_token_limited_to_a_project_needs_no_project(client, editor, project):
    member(editor, "editor", ProjectFactory(slug="second"))
    key = _token(editor, "telemetry", project)
    response = send(client, {"points": [point()]}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 202, response.content
    assert Source.objects.get().project == project


def test_a_telemetry_token_is_refused_elsewhere(client, editor):
    key = _token(editor, "telemetry")
    response = client.get("/api/datasets/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403
    assert "telemetry" in response.json()["detail"]
    response = client.post("/api/anomaly/detect/", data="{}", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403


def test_a_predict_token_is_refused_here(client, editor):
    key = _token(editor, "predict")
    response = send(client, {"points": [point()]}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403
    assert not Source.objects.exists()
