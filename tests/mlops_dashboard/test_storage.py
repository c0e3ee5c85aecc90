"""The storage report: `manage.py storage_report` and the System page's panel."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection

from mlops_dashboard import storage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rows(redis_client, settings, tmp_path):
    from mlops_dashboard.events import bus, catalog, publish
    from tests.factories import ActivityFactory, DatasetFactory, ModelVersionFactory

    settings.MEDIA_ROOT = tmp_path / "media"  # only this test's files
    cache.delete(storage.CACHE_KEY)
    for _ in range(3):
        ActivityFactory()
    datasets = [DatasetFactory(), DatasetFactory()]
    ModelVersionFactory(artifact=default_storage.save("models/a.joblib", ContentFile(b"x" * 1000)))
    default_storage.save("elsewhere/note.txt", ContentFile(b"hello"))
    publish(catalog.ActivityUpdate(activity={"id": None, "title": "t", "description": "", "user": None,
                                             "action_type": "test", "status": "info", "severity_level": "info",
                                             "duration": None, "metadata": {}}))
    bus.reset_clients()
    return datasets


def by_key(report):
    return {kind["key"]: kind for kind in report["kinds"]}


def test_the_report_counts_rows_table_bytes_files_and_the_event_log(rows):
    report = storage.storage_report(fresh=True)
    kinds = by_key(report)
    assert kinds["activity"]["rows"] == 3 and kinds["activity"]["retention"] == "90 days"
    assert kinds["datasets"]["rows"] == 2 and kinds["datasets"]["retention"] == "kept"
    files = kinds["datasets"]["files"]
    assert files["count"] == 2 and files["bytes"] == sum(d.file.size for d in rows)
    assert kinds["model_versions"]["files"] == {"directory": "models", "count": 1, "bytes": 1000}
    assert report["other_files"] == {"count": 1, "bytes": 5}
    assert report["event_log"]["entries"] >= 1 and report["event_log"]["bytes"] > 0
    if connection.vendor == "postgresql" or kinds["activity"]["bytes"] is not None:  # SQLite: when dbstat exists
        assert kinds["activity"]["bytes"] > 0


def test_the_report_is_cached_for_a_few_seconds(rows, settings):
    from tests.factories import ActivityFactory

    settings.STORAGE_REPORT_CACHE_SECONDS = 60
    first = storage.storage_report()
    ActivityFactory()
    assert by_key(storage.storage_report())["activity"]["rows"] == by_key(first)["activity"]["rows"] == 3
    assert by_key(storage.storage_report(fresh=True))["activity"]["rows"] == 4


def test_the_command_prints_a_table_and_json(rows):
    out = StringIO()
    call_command("storage_report", stdout=out)
    text = out.getvalue()
    activity = next(line for line in text.splitlines() if line.startswith("Activity feed"))
    assert re.search(r"90 days\s+3\s", activity), activity
    datasets_line = next(line for line in text.splitlines() if line.startswith("Datasets"))
    assert re.search(r"\bkept\s+2\s.*\s2\s", datasets_line), datasets_line
    assert "Event log (Redis)" in text and "Other files under MEDIA_ROOT" in text
    out = StringIO()
    call_command("storage_report", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert by_key(report)["activity"]["rows"] == 3 and report["database"] == connection.vendor


def test_large_postgresql_tables_are_estimated_not_counted(rows, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("reltuples estimates are PostgreSQL's (run with DATABASE_URL=postgres://...)")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mlops_dashboard_activity")
    monkeypatch.setattr(storage, "ESTIMATE_ABOVE_ROWS", 1)
    kind = by_key(storage.storage_report(fresh=True))["activity"]
    assert kind["estimated"] is True and kind["rows"] == 3
    out = StringIO()
    call_command("storage_report", stdout=out)
    assert "~3" in out.getvalue() and "estimate" in out.getvalue()


def test_the_system_page_shows_the_panel_to_staff_only(client, rows, staff_user, user):
    client.force_login(staff_user)
    html = client.get("/monitoring/system/").content.decode()
    start = html.index('<section class="card mon-section" id="storage"')
    panel = html[start:html.index("</section>", start)]
    assert 'data-kind="activity"' in panel and 'data-kind="event_log"' in panel and "RETENTION_ACTIVITY_DAYS" in panel
    activity = panel[panel.index('data-kind="activity"'):]
    from mlops_dashboard.models import Activity

    count = Activity.objects.count()  # the 3 made, and the staff user's login line
    assert count == 4 and f'<td class="num">{count}</td>' in activity[:activity.index("</tr>")], activity
    assert "style=" not in panel and "<script" not in panel  # the page runs under a CSP
    client.force_login(user)
    assert 'id="storage"' not in client.get("/monitoring/system/").content.decode()
