"""Pages: Telemetry (the current project's sources, live) and a source's page (charts, anomalies, the
registry forms for those allowed), with the fragments their live updates fetch."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Anomaly
from tests.factories import MetricFactory, PointFactory, ProjectFactory, SourceFactory, UserFactory, member

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/telemetry/", "/telemetry/sources/1/", "/telemetry/sources/1/card/"])
def test_pages_require_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_the_index_shows_each_source_with_status_last_values_and_sparklines(client, user):
    live = SourceFactory(name="press-07", is_demo=True)
    MetricFactory(source=live, name="temperature", unit="°C", last_value=71.25, last_timestamp=timezone.now())
    MetricFactory(source=live, name="vibration", unit="mm/s", last_value=None)
    silent = SourceFactory(name="gpu-node-2", last_seen=timezone.now() - timedelta(hours=2))
    elsewhere = SourceFactory(name="hidden-press", project=ProjectFactory(name="Beta", slug="beta"))
    client.force_login(user)
    html = client.get("/telemetry/").content.decode()
    assert f'id="tl-source-{live.pk}"' in html and f'id="tl-source-{silent.pk}"' in html
    assert f'id="tl-source-{elsewhere.pk}"' not in html and "hidden-press" not in html
    assert f'data-source-id="{live.pk}" data-status="live"' in html
    assert f'data-source-id="{silent.pk}" data-status="silent"' in html
    assert "demo data" in html and html.count("demo data") == 1
    assert "71.25" in html and "°C" in html
    assert html.count('class="tl-spark"') == 2
    assert "vendor/uplot/uPlot.min.css" in html and "js/pages/telemetry.js" in html
    assert 'id="telemetry-data"' in html and 'aria-current="page"' in html
    assert "1 of 2 sources live" in " ".join(html.replace("<span data-live-count>", "").replace("</span>", "").split())


def test_the_index_explains_how_to_send_points_when_empty(client, user):
    client.force_login(user)
    html = client.get("/telemetry/").content.decode()
    assert "No telemetry yet" in html and "curl -X POST" in html and "/api/telemetry/" in html
    assert 'href="/account/tokens/"' in html and "Authorization: Token" in html


def test_a_card_fragment_renders_one_source(client, user):
    source = SourceFactory(name="press-07")
    MetricFactory(source=source, name="power", unit="kW", last_value=3.5)
    client.force_login(user)
    response = client.get(f"/telemetry/sources/{source.pk}/card/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.startswith(f'<article class="card tl-card" id="tl-source-{source.pk}"') and "3.5" in html


def test_the_source_page_charts_each_metric_with_the_last_hour(client, user):
    source = SourceFactory(name="press-07")
    metric = MetricFactory(source=source, name="temperature")
    MetricFactory(source=source, name="vibration")
    for value in (70.0, 71.0, 72.0):
        PointFactory(series=metric, value=value)
    client.force_login(user)
    response = client.get(f"/telemetry/sources/{source.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'data-chart="{metric.pk}"' in html and 'data-metric="vibration"' in html
    assert response.context["page_data"]["initial"]["series"][str(metric.pk)]["resolution"] == "raw"
    assert len(response.context["page_data"]["initial"]["series"][str(metric.pk)]["points"]) == 3
    for key in ("15m", "1h", "24h", "7d"):
        assert f'data-range="{key}"' in html
    assert 'id="tl-custom"' in html and 'id="tl-reset-zoom"' in html
    assert 'id="tl-detect-form"' in html and 'id="tl-source-form"' in html and html.count('class="tl-metric-form"') == 2
    assert "js/pages/telemetry_source.js" in html and "vendor/uplot/uPlot.min.css" in html


def test_another_projects_source_is_404(client, user):
    beta = ProjectFactory(name="Beta", slug="beta")
    source = SourceFactory(name="press-07", project=beta)
    client.force_login(user)
    for url in (f"/telemetry/sources/{source.pk}/", f"/telemetry/sources/{source.pk}/card/",
                f"/monitoring/telemetry/{source.pk}/anomalies/"):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/telemetry/sources/{source.pk}/registry/", {"expected_interval_seconds": 5}).status_code == 404
    assert client.get("/telemetry/sources/999999/").status_code == 404


def test_a_viewer_sees_no_edit_form_but_the_role_needed(client):
    viewer = UserFactory(username="vera")
    member(viewer, "viewer")
    source = SourceFactory(name="press-07")
    MetricFactory(source=source, name="temperature")
    client.force_login(viewer)
    html = client.get(f"/telemetry/sources/{source.pk}/").content.decode()
    assert 'id="tl-source-form"' not in html and 'class="tl-metric-form"' not in html
    assert 'id="tl-registry-locked"' in html and "maintainer role" in html
    assert 'id="tl-detect-form"' not in html and 'id="tl-detect-locked"' in html and "editor role" in html
    response = client.post(f"/telemetry/sources/{source.pk}/registry/", {"expected_interval_seconds": 5})
    assert response.status_code == 403
    source.refresh_from_db()
    assert source.expected_interval_seconds == 10


def test_the_anomalies_fragment_lists_the_sources_anomalies_in_range(client, user):
    source = SourceFactory(name="press-07")
    other = SourceFactory(name="press-08")
    now = timezone.now().replace(microsecond=0)

    def anomaly(src, observed, metric="temperature"):
        return Anomaly.objects.create(source="telemetry", entity=src.name, metric=metric, value=99.5, score=4.2,
                                      severity="high", project=src.project, telemetry_source=src,
                                      observed_at=observed)

    inside = anomaly(source, now - timedelta(minutes=5))
    old = anomaly(source, now - timedelta(days=2))
    theirs = anomaly(other, now - timedelta(minutes=5))
    client.force_login(user)
    start = int((now - timedelta(hours=1)).timestamp() * 1000)
    end = int(now.timestamp() * 1000)
    html = client.get(f"/monitoring/telemetry/{source.pk}/anomalies/?start={start}&end={end}").content.decode()
    assert f'data-anomaly-id="{inside.pk}"' in html
    assert f'data-anomaly-id="{old.pk}"' not in html and f'data-anomaly-id="{theirs.pk}"' not in html
    assert f'data-observed="{int(inside.observed_at.timestamp())}"' in html and 'data-value="99.5"' in html
    everything = client.get(f"/monitoring/telemetry/{source.pk}/anomalies/?start=nonsense").content.decode()
    assert f'data-anomaly-id="{old.pk}"' in everything


def test_the_registry_forms_save_through_the_services_and_show_errors_by_field(client, user):
    source = SourceFactory(name="press-07")
    metric = MetricFactory(source=source, name="temperature", unit="°C")
    client.force_login(user)
    response = client.post(f"/telemetry/sources/{source.pk}/registry/", {
        "description": "Press line A", "labels": '{"line": "A"}', "expected_interval_seconds": 5})
    assert response.status_code == 302 and response["Location"].endswith(f"/telemetry/sources/{source.pk}/#registry")
    source.refresh_from_db()
    assert (source.description, source.labels, source.expected_interval_seconds) == ("Press line A", {"line": "A"}, 5)

    prefix = f"metric-{metric.pk}"
    response = client.post(f"/telemetry/sources/{source.pk}/metrics/{metric.pk}/registry/", {
        f"{prefix}-unit": "K", f"{prefix}-description": "", f"{prefix}-labels": "",
        f"{prefix}-expected_interval_seconds": ""})
    assert response.status_code == 302
    metric.refresh_from_db()
    assert metric.unit == "K" and metric.labels == {} and metric.expected_interval_seconds is None

    bad = client.post(f"/telemetry/sources/{source.pk}/registry/", {
        "description": "x", "labels": '["not", "an object"]', "expected_interval_seconds": 0})
    assert bad.status_code == 400
    html = bad.content.decode()
    assert 'data-error-for="labels"' in html and 'data-error-for="expected_interval_seconds"' in html
    source.refresh_from_db()
    assert source.description == "Press line A"
    bad_metric = client.post(f"/telemetry/sources/{source.pk}/metrics/{metric.pk}/registry/", {
        f"{prefix}-unit": "K", f"{prefix}-labels": '{"k": 3}', f"{prefix}-expected_interval_seconds": ""})
    assert bad_metric.status_code == 400 and f'data-error-for="{prefix}-labels"' in bad_metric.content.decode()
    assert client.post(f"/telemetry/sources/{source.pk}/metrics/999999/registry/", {}).status_code == 404
