"""POST /api/telemetry/import/: CSV history, long and wide, through a real server and worker; a bad
line fails the import naming it, and nothing is stored."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from telemetry import imports
from telemetry.models import Metric, MinuteRollup, Point, Source, TelemetryImport
from tests import events as event_record
from tests import procs
from tests.conftest import session_cookie
from tests.factories import ProjectFactory, UserFactory, api_token_for, member

URL = "/api/telemetry/import/"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def long_csv(n=300) -> bytes:
    lines = ["timestamp,source,metric,value"]
    for i in range(n):
        t = (T0 + timedelta(seconds=10 * i)).isoformat().replace("+00:00", "Z")
        lines.append(f"{t},press-07,temperature,{70 + i % 7}")
        lines.append(f"{int((T0 + timedelta(seconds=10 * i)).timestamp() * 1000)},press-08,vibration,{i / 10}")
    return ("\n".join(lines) + "\n").encode()


def wide_csv() -> bytes:
    return (b"timestamp,temperature,vibration,power\n"
            b"2026-12-01T08:00:00Z,70.5,0.1,300\n"
            b"2026-12-01T08:00:10Z,71.0,,301\n"  # no vibration reading then
            b"2026-12-01T08:00:10Z,72.0,0.3,302\n"  # the same time again: the last value wins
            b"\n"
            b"2026-12-01T08:00:20,73.0,0.4,303\n")


def wait_ended(pk, timeout=120):
    return procs.wait_for(lambda: (job := TelemetryImport.objects.get(pk=pk)).is_terminal and job, timeout=timeout,
                          message=f"telemetry import {pk} to end")


# --- through the real server and worker ----------------------------------------------------------------


def test_a_long_csv_is_imported_with_progress_events(server, worker, client, user, project, open_socket):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    body = long_csv(3000)
    response = httpx.post(f"{server.url}{URL}?project={project.pk}",
                          headers={"Authorization": f"Token {api_token_for(user)}"},
                          files={"file": ("history.csv", body, "text/csv")}, timeout=60)
    assert response.status_code == 202, response.text
    created = response.json()
    assert created["status"] == "queued" and created["url"] == reverse("api-telemetry-import-detail",
                                                                       args=[created["id"]])
    pk = created["id"]
    events = sock.recv_until(lambda e: e["type"] == "telemetry_import_completed" and e["import_id"] == pk, timeout=120)
    if not any(e["type"] == "upload_progress" and e.get("progress_percent") == 100.0 for e in events):
        # The upload's last progress is coalesced and may come after a quick import has ended.
        events += sock.recv_until(lambda e: e["type"] == "upload_progress" and e.get("progress_percent") == 100.0,
                                  timeout=30)
    event_record.expect(events, "upload_progress", filename="history.csv", progress_percent=100.0)
    progress = [e for e in events if e["type"] == "telemetry_import_progress" and e["import_id"] == pk]
    assert progress, [e["type"] for e in events]
    event_record.expect(progress, "telemetry_import_progress", import_id=pk, project_id=project.pk,
                        filename="history.csv")
    done = event_record.expect(events, "telemetry_import_completed", import_id=pk, status="succeeded", rows=6000,
                               points=6000, project_id=project.pk, user_id=user.pk)
    assert done["start"] == T0.isoformat() and "error" not in done
    assert [e["progress"] for e in progress] == sorted(e["progress"] for e in progress)
    # No live points for history.
    assert not [e for e in events if e["type"] == "telemetry_points"]

    job = wait_ended(pk)
    assert (job.status, job.rows, job.points, job.format) == ("succeeded", 6000, 6000, "long")
    assert job.file.name == "" and job.progress == 100.0
    status = httpx.get(f"{server.url}{created['url']}", headers={"Authorization": f"Token {api_token_for(user)}"},
                       timeout=30).json()
    assert (status["status"], status["rows"], status["points"]) == ("succeeded", 6000, 6000)
    temperature = Metric.objects.get(source__name="press-07", name="temperature")
    assert Point.objects.filter(series=temperature).count() == 3000
    last = T0 + timedelta(seconds=10 * 2999)
    assert (temperature.last_timestamp, temperature.last_value) == (last, 70 + 2999 % 7)
    assert Source.objects.get(name="press-08").last_seen == last  # the newest reading, not the import's time
    assert MinuteRollup.objects.filter(series=temperature).count() == 500  # rollups of the imported range


def test_a_wide_csv_with_a_source_parameter(server, worker, client, user, project):
    response = httpx.post(f"{server.url}{URL}", headers={"Authorization": f"Token {api_token_for(user)}"},
                          files={"file": ("wide.csv", wide_csv(), "text/csv")}, data={"source": "line-1"},
                          timeout=60)
    assert response.status_code == 202, response.text
    job = wait_ended(response.json()["id"])
    assert (job.status, job.format, job.rows, job.points) == ("succeeded", "wide", 4, 9), job.error
    source = Source.objects.get(project=project, name="line-1")
    values = {m.name: [p.value for p in Point.objects.filter(series=m).order_by("timestamp")]
              for m in source.metrics.all()}
    assert values == {"temperature": [70.5, 72.0, 73.0], "vibration": [0.1, 0.3, 0.4], "power": [300, 302, 303]}


def test_a_bad_line_fails_the_import_naming_it_and_nothing_is_stored(server, worker, client, user, project,
                                                                     open_socket):
    sock = open_socket(cookie=session_cookie(client, user))
    sock.send({"type": "ping", "ts": 0})
    sock.recv()
    lines = long_csv(2000).decode().splitlines()
    lines[3001] = "2026-12-01T09:00:00Z,press-07,temperature,warm"
    response = httpx.post(f"{server.url}{URL}", headers={"Authorization": f"Token {api_token_for(user)}"},
                          files={"file": ("bad.csv", "\n".join(lines).encode(), "text/csv")}, timeout=60)
    assert response.status_code == 202, response.text
    pk = response.json()["id"]
    events = sock.recv_until(lambda e: e["type"] == "telemetry_import_completed" and e["import_id"] == pk, timeout=120)
    done = event_record.expect(events, "telemetry_import_completed", import_id=pk, status="failed", points=0)
    assert done["error"].startswith("Line 3002, value: a number; got 'warm'."), done
    job = wait_ended(pk)
    assert job.status == "failed" and "Line 3002" in job.error and "Nothing was stored" in job.error
    assert not Point.objects.exists() and not Source.objects.exists()
    assert job.file.name == ""


# --- refused in the request: the header, the project, the role -----------------------------------------



@pytest.fixture
def editor(project):
    carol = UserFactory(username="carol")
    member(carol, "editor", project)
    return carol


def upload(client, content: bytes, url=URL, **data):
    return client.post(url, {"file": SimpleUploadedFile("h.csv", content, "text/csv"), **data})


@pytest.mark.django_db
@pytest.mark.parametrize(("content", "data", "says"), [
    (b"", {}, "empty"),
    (b"time,source,metric,value\n", {}, "no `timestamp` column"),
    (b"timestamp,temperature\n1,2\n", {}, "Which source?"),
    (b"timestamp,source,temp erature\n", {}, "not a metric name"),
    (b"timestamp,source,a,A\n", {}, "twice"),
    (b"timestamp,source,metric,value\n", {"source": "x"}, "give one"),
    (b"timestamp,metric,value\n", {"source": "bad name"}, "source"),
    (b"\xff\xfe\x00t\n", {"source": "x"}, "UTF-8"),
], ids=["empty", "no-timestamp", "no-source", "bad-metric", "twice", "two-sources", "bad-source", "not-utf8"])
def test_a_bad_header_is_a_400_at_once(client, editor, content, data, says):
    client.force_login(editor)
    response = upload(client, content, **data)
    assert response.status_code == 400, response.content
    assert says in response.json()["detail"], response.json()
    assert not TelemetryImport.objects.exists()


@pytest.mark.django_db
def test_a_viewer_is_refused_before_the_body(client, project):
    viewer = UserFactory(username="vera")
    member(viewer, "viewer", project)
    client.force_login(viewer)
    response = upload(client, long_csv(3), url=f"{URL}?project={project.pk}")
    assert response.status_code == 403 and "editor" in response.json()["detail"]
    response = upload(client, long_csv(3))
    assert response.status_code == 403
    assert not TelemetryImport.objects.exists()


@pytest.mark.django_db
def test_an_invisible_project_is_a_404(client, editor):
    other = ProjectFactory(slug="elsewhere")
    client.force_login(editor)
    assert upload(client, long_csv(3), url=f"{URL}?project={other.pk}").status_code == 404
    assert upload(client, long_csv(3), project=other.pk).status_code == 404
    assert not TelemetryImport.objects.exists()


@pytest.mark.django_db
def test_a_telemetry_token_may_not_import(client, editor):
    from mlops_dashboard.tokens import api_token_create

    key = api_token_create(user=editor, scope="telemetry")[1]
    response = client.post(URL, {"file": SimpleUploadedFile("h.csv", long_csv(3))}, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403


@pytest.mark.django_db
def test_the_status_of_another_projects_import_is_a_404(client, editor):
    from tests.factories import TelemetryImportFactory

    mine = TelemetryImportFactory()
    theirs = TelemetryImportFactory(project=ProjectFactory(slug="elsewhere"))
    client.force_login(editor)
    assert client.get(reverse("api-telemetry-import-detail", args=[mine.pk])).json()["points"] == 30
    assert client.get(reverse("api-telemetry-import-detail", args=[theirs.pk])).status_code == 404


# --- the service, run in this process ------------------------------------------------------------------


def _run(user, content: bytes, source: str = "") -> TelemetryImport:
    job = imports.telemetry_import_create(user=user, uploaded_file=SimpleUploadedFile("h.csv", content), source=source)
    name = job.file.name
    imports.telemetry_import_run(import_id=job.pk)
    job.refresh_from_db()
    assert not default_storage.exists(name) or job.file.name == ""
    return job


@pytest.mark.django_db
def test_limits_on_new_sources_fail_the_import_and_store_nothing(user, project, settings):
    settings.TELEMETRY_MAX_SOURCES = 1
    job = _run(user, long_csv(5))
    assert job.status == "failed" and "TELEMETRY_MAX_SOURCES" in job.error
    assert not Source.objects.exists() and not Point.objects.exists()


@pytest.mark.django_db
def test_limits_on_new_metrics_fail_the_import_and_store_nothing(user, project, settings):
    settings.TELEMETRY_MAX_METRICS = 1
    job = _run(user, b"timestamp,source,metric,value\n2026-12-01T08:00:00Z,a,x,1\n2026-12-01T08:00:00Z,a,y,1\n")
    assert job.status == "failed" and "TELEMETRY_MAX_METRICS" in job.error
    assert not Point.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("line", "says"), [
    ("2026-12-01T08:00:00Z,press-07,temperature", "Line 3: 3 fields, the header has 4."),
    (",press-07,temperature,1", "Line 3, timestamp: missing."),
    ("yesterday,press-07,temperature,1", "Line 3, timestamp: ISO 8601"),
    ("1733000000,press-07,temperature,1", "epoch seconds"),
    ("2026-12-01T08:00:00Z,press 07,temperature,1", "Line 3, source:"),
    ("2026-12-01T08:00:00Z,press-07,,1", "Line 3, metric:"),
    ("2026-12-01T08:00:00Z,press-07,temperature,nan", "Line 3, value: a finite number"),
    ("2026-12-01T08:00:00Z,press-07,temperature,", "Line 3, value: a number"),
])
def test_each_bad_field_names_its_line(user, project, line, says):
    content = f"timestamp,source,metric,value\n2026-12-01T07:00:00Z,press-07,temperature,1\n{line}\n".encode()
    job = _run(user, content)
    assert job.status == "failed"
    assert job.error.startswith(says) or says in job.error, job.error
    assert not Point.objects.exists() and not Source.objects.exists()


@pytest.mark.django_db
def test_semicolons_and_a_bom_and_epoch_ms(user, project):
    ms = int(datetime(2026, 12, 1, 8, tzinfo=UTC).timestamp() * 1000)
    job = _run(user, f"\ufefftimestamp;source;temperature\n{ms};a;1.5\n{ms + 1000};a;2.5\n".encode())
    assert job.status == "succeeded", job.error
    assert sorted(Point.objects.values_list("value", flat=True)) == [1.5, 2.5]


@pytest.mark.django_db
def test_importing_the_same_file_twice_is_harmless(user, project):
    assert _run(user, long_csv(10)).status == "succeeded"
    assert _run(user, long_csv(10)).status == "succeeded"
    assert Point.objects.count() == 20


@pytest.mark.django_db
def test_last_seen_and_last_value_never_go_back(user, project):
    from telemetry.services import Reading, points_ingest

    later = T0 + timedelta(days=1)
    points_ingest(user=user, project=project, readings=[Reading("press-07", "temperature", later, 99.0)])
    seen = Source.objects.get().last_seen
    assert _run(user, long_csv(10)).status == "succeeded"
    metric = Metric.objects.get(source__name="press-07")
    assert (metric.last_timestamp, metric.last_value) == (later, 99.0)
    assert Source.objects.get(name="press-07").last_seen == seen


@pytest.mark.django_db
def test_a_dead_workers_import_is_reaped(user, project):
    from mlops_dashboard import jobs

    job = imports.telemetry_import_create(user=user, uploaded_file=SimpleUploadedFile("h.csv", long_csv(3)))
    name = job.file.name
    TelemetryImport.objects.filter(pk=job.pk).update(status="running", heartbeat_at=T0)
    assert imports.telemetry_imports_reap_stale() == 1
    job.refresh_from_db()
    assert job.status == "failed" and "worker lost" in job.error
    assert any(k.key == "telemetry_import" for k in jobs.kinds())
    assert name


def test_csv_reader_handles_quotes():
    layout = imports.layout_read('timestamp,source,"metric",value\n')
    rows = list(imports.readings(io.BytesIO(b'timestamp,source,metric,value\n"2026-12-01T08:00:00Z","a","b","1"\n'),
                                 layout, datetime(2030, 1, 1, tzinfo=UTC)))
    assert rows == [(2, "a", "b", datetime(2026, 12, 1, 8, tzinfo=UTC), 1.0)]
