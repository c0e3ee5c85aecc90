"""The admin of telemetry's registry: sources and metrics listed with their project (and filtered by
it), edited through the services (audited, validated), a source deleted with its points; points and
rollups are not registered."""

import pytest
from django.contrib import admin
from django.utils import timezone

from mlops_dashboard.models import AuditEntry
from telemetry.models import HourRollup, Metric, MinuteRollup, Point, Source
from tests.factories import (HourRollupFactory, MetricFactory, MinuteRollupFactory, PointFactory, ProjectFactory,
                             SourceFactory)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, staff_user):
    client.force_login(staff_user)
    return client


def test_sources_list_with_status_and_metric_count_filtered_by_project(staff):
    other = ProjectFactory(slug="plant-b")
    live = SourceFactory(name="press-07")
    MetricFactory(source=live, name="temperature")
    MetricFactory(source=live, name="power")
    SourceFactory(name="kiln-2", project=other, last_seen=timezone.now() - timezone.timedelta(hours=1))
    page = staff.get("/admin/telemetry/source/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "press-07" in text and "kiln-2" in text and "silent" in text and "live" in text
    assert page.context["cl"].result_list.get(name="press-07").metrics_count == 2
    only_b = staff.get("/admin/telemetry/source/", {"project__id__exact": other.pk}).content.decode()
    assert "kiln-2" in only_b and "press-07" not in only_b
    assert "press-07" in staff.get("/admin/telemetry/source/", {"q": "press"}).content.decode()
    assert staff.get(f"/admin/telemetry/source/{live.pk}/change/").status_code == 200
    assert staff.get("/admin/telemetry/source/add/").status_code == 403  # made on first sight by the ingest


def test_metrics_list_filtered_by_project_through_the_source(staff):
    other = ProjectFactory(slug="plant-b")
    MetricFactory(source=SourceFactory(name="press-07"), name="temperature")
    MetricFactory(source=SourceFactory(name="kiln-2", project=other), name="flame")
    page = staff.get("/admin/telemetry/metric/")
    assert page.status_code == 200 and "flame" in page.content.decode() and "temperature" in page.content.decode()
    only_b = staff.get("/admin/telemetry/metric/", {"source__project__id__exact": other.pk}).content.decode()
    assert "flame" in only_b and "temperature" not in only_b
    assert "flame" in staff.get("/admin/telemetry/metric/", {"q": "kiln"}).content.decode()


# The read-only metrics inline's management form, as the change page posts it.
INLINE = {"metrics-TOTAL_FORMS": "0", "metrics-INITIAL_FORMS": "0", "metrics-MIN_NUM_FORMS": "0",
          "metrics-MAX_NUM_FORMS": "1000"}


def test_registry_edits_go_through_the_services(staff):
    source = SourceFactory(name="press-07")
    metric = MetricFactory(source=source, name="temperature")
    response = staff.post(f"/admin/telemetry/source/{source.pk}/change/", {
        "description": "Hydraulic press, line 3", "labels": '{"line": "3"}', "expected_interval_seconds": "30",
        "_save": "Save", **INLINE})
    assert response.status_code == 302, response.content.decode()[:3000]
    source.refresh_from_db()
    assert (source.description, source.labels, source.expected_interval_seconds) == (
        "Hydraulic press, line 3", {"line": "3"}, 30)
    assert AuditEntry.objects.filter(object_type="telemetry.source", action="update").exists()
    # Invalid labels: the form says so, nothing changes.
    bad = staff.post(f"/admin/telemetry/source/{source.pk}/change/", {
        "description": "x", "labels": '{"line": 3}', "expected_interval_seconds": "30", **INLINE})
    assert bad.status_code == 200 and "a string of at most" in bad.content.decode()
    source.refresh_from_db()
    assert source.description == "Hydraulic press, line 3"

    response = staff.post(f"/admin/telemetry/metric/{metric.pk}/change/", {
        "unit": "K", "description": "", "labels": "{}", "expected_interval_seconds": "",
        "anomaly": '{"direction": "up", "min_change": 5}'})
    assert response.status_code == 302, response.content.decode()[:3000]
    metric.refresh_from_db()
    assert metric.unit == "K" and metric.anomaly == {"direction": "up", "min_change": 5}
    bad = staff.post(f"/admin/telemetry/metric/{metric.pk}/change/", {
        "unit": "K", "description": "", "labels": "{}", "expected_interval_seconds": "",
        "anomaly": '{"direction": "sideways"}'})
    assert bad.status_code == 200 and "direction" in bad.content.decode()
    assert Metric.objects.get(pk=metric.pk).anomaly == {"direction": "up", "min_change": 5}


def test_deleting_a_source_removes_its_metrics_points_and_rollups(staff):
    source = SourceFactory(name="press-07")
    metric = MetricFactory(source=source)
    PointFactory.create_batch(3, series=metric)
    MinuteRollupFactory(series=metric)
    HourRollupFactory(series=metric)
    kept = PointFactory(series=MetricFactory(source=SourceFactory(name="kiln-2")))
    response = staff.post(f"/admin/telemetry/source/{source.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Source.objects.filter(pk=source.pk).exists() and not Metric.objects.filter(pk=metric.pk).exists()
    assert not Point.objects.filter(series_id=metric.pk).exists()
    assert not MinuteRollup.objects.filter(series_id=metric.pk).exists()
    assert not HourRollup.objects.filter(series_id=metric.pk).exists()
    assert Point.objects.filter(pk=kept.pk).exists()


def test_deleting_a_metric_removes_its_points_and_rollups(staff):
    source = SourceFactory(name="press-07")
    metric, kept = MetricFactory(source=source, name="temperature"), MetricFactory(source=source, name="power")
    PointFactory.create_batch(3, series=metric)
    MinuteRollupFactory(series=metric)
    PointFactory(series=kept)
    response = staff.post(f"/admin/telemetry/metric/{metric.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Metric.objects.filter(pk=metric.pk).exists() and not Point.objects.filter(series_id=metric.pk).exists()
    assert not MinuteRollup.objects.filter(series_id=metric.pk).exists()
    assert Source.objects.filter(pk=source.pk).exists() and Point.objects.filter(series=kept).count() == 1
    assert AuditEntry.objects.filter(object_type="telemetry.metric", action="delete").exists()


def test_points_and_rollups_are_not_in_the_admin():
    for model in (Point, MinuteRollup, HourRollup):
        assert not admin.site.is_registered(model)
    assert admin.site.is_registered(Source) and admin.site.is_registered(Metric)
