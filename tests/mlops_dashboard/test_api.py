"""The backbone's HTTP surface: auth, problem details, the event log API, health, login-required pages."""

import pytest
from django.urls import reverse

from mlops_dashboard.events import bus, catalog, publish

pytestmark = pytest.mark.django_db


def test_token_endpoint_gives_a_token_for_good_credentials(client, user):
    response = client.post("/api/auth/token/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 200 and response.json()["token"].startswith("mlops_")
    api = client.__class__(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api.get("/api/events/").status_code == 200


def test_token_endpoint_refuses_bad_credentials_with_problem_details(client, user):
    response = client.post("/api/auth/token/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 400 and body["title"] == "Invalid request"
    assert "Unable to log in" in body["detail"] and "non_field_errors" in body["errors"]


def test_anonymous_api_requests_get_401_json(client):
    response = client.get("/api/events/")
    assert response.status_code in (401, 403)
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"]


def test_unknown_api_url_is_a_json_404(client, user):
    client.force_login(user)
    response = client.get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["detail"] == "No API endpoint at /api/no-such-thing/."


def test_events_api_pages_through_the_log_oldest_first(client, user, project):
    client.force_login(user)
    start = bus.latest_id()
    ids = [publish(catalog.DatasetCreated(project_id=project.id, dataset_id=n, name="x")) for n in range(5)]
    page = client.get(f"/api/events/?after={start}&limit=3").json()
    assert [e["id"] for e in page["events"]] == ids[:3]
    assert page["has_more"] and page["next_after"] == ids[2] and not page["gap"]
    rest = client.get(f"/api/events/?after={page['next_after']}&limit=3").json()
    assert [e["id"] for e in rest["events"]] == ids[3:] and not rest["has_more"]
    assert rest["latest_id"] == ids[-1]


def test_events_api_hides_other_users_uploads(client, user, other_user):
    client.force_login(user)
    start = bus.latest_id()
    publish(catalog.UploadProgress(filename="b.csv", bytes_uploaded=1, total_bytes=2, progress_percent=50.0,
                                   upload_speed=1.0, estimated_time_remaining=1.0, user_id=other_user.id, upload_key="z"))
    assert client.get(f"/api/events/?after={start}").json()["events"] == []


@pytest.mark.parametrize("query", ["after=-1", "after=abc", "limit=0", "limit=100000"])
def test_events_api_rejects_bad_parameters(client, user, query):
    client.force_login(user)
    response = client.get(f"/api/events/?{query}")
    assert response.status_code == 400 and response.json()["errors"]


def test_test_event_is_for_staff_only(client, user, staff_user):
    client.force_login(user)
    assert client.post("/api/events/test/").status_code == 403
    client.force_login(staff_user)
    response = client.post("/api/events/test/")
    assert response.status_code == 201
    event = [e for e in client.get(f"/api/events/?after={response.json()['id'] - 1}").json()["events"]][0]
    assert event["type"] == "activity_update" and event["activity"]["action_type"] == "test"
    assert client.post("/api/events/test/", {"via": "mars"}, content_type="application/json").status_code == 400


@pytest.mark.parametrize("url", ["/", "/live/", "/datasets/", "/training/", "/pipelines/", "/monitoring/",
                                 "/monitoring/system/"])
def test_pages_require_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_login_page_logs_in_and_pages_render(client, user):
    assert client.get("/login/").status_code == 200
    response = client.post("/login/", {"username": "alice", "password": "alice-pass-123"})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    page = client.get("/live/")
    assert page.status_code == 200
    assert b'id="realtime-config"' in page.content and b'id="connection"' in page.content


def test_openapi_schema_and_docs(client, user):
    client.force_login(user)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/events/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_health_is_public_and_reports_each_service(client, live_worker_proc):
    from mlops_dashboard import health

    health.reset_cache()
    response = client.get("/health/")
    body = response.json()
    assert set(body["checks"]) == {"database", "redis", "channel_layer", "celery"}
    for check in body["checks"].values():
        assert check == {"status": "ok"}  # details are for staff (tests/mlops_dashboard/test_health.py)
    assert response.status_code == 200 and body["status"] == "ok"


def test_health_is_503_when_a_service_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    from mlops_dashboard import health

    checks = {"redis": health.check_redis}
    original = health.CHECKS
    health.CHECKS = checks
    health.reset_cache()
    try:
        response = client.get("/health/")
    finally:
        health.CHECKS = original
        health.reset_cache()
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["status"] == "down"


def test_events_api_pages_are_bounded_in_bytes_and_page_through_everything(client, user, project, settings):
    settings.EVENTS_PAGE_MAX_BYTES = 30_000
    client.force_login(user)
    start = bus.latest_id()
    ids = [publish(catalog.DatasetCreated(project_id=project.id, dataset_id=n, name=f"{n}" + "x" * 9_000)) for n in range(10)]
    first = client.get(f"/api/events/?after={start}&limit=100")
    assert len(first.content) < 40_000  # 3 events of ~9 KB, not all 10
    page = first.json()
    assert [e["id"] for e in page["events"]] == ids[:3] and page["has_more"] and page["next_after"] == ids[2]
    seen, after = [], start
    while True:
        page = client.get(f"/api/events/?after={after}&limit=100").json()
        seen += [e["id"] for e in page["events"]]
        after = page["next_after"]
        if not page["has_more"]:
            break
    assert seen == ids and not page["gap"]


def test_the_activity_api_lists_only_the_users_projects_lines(client, user, staff_user):
    from tests.factories import ActivityFactory, ProjectFactory, UserFactory, member

    a, b = ProjectFactory(slug="team-a"), ProjectFactory(slug="team-b")
    ann = UserFactory(username="ann")
    member(ann, "viewer", a)
    mine = ActivityFactory(project=a, title="a's")
    theirs = ActivityFactory(project=b, title="b's")
    system = ActivityFactory(project=None, title="root logged in")
    client.force_login(ann)
    assert [x["id"] for x in client.get("/api/activity/").json()["results"]] == [mine.id]
    assert client.get(f"/api/activity/{theirs.id}/").status_code == 404
    assert client.get(f"/api/activity/{system.id}/").status_code == 404
    client.force_login(staff_user)
    assert {mine.id, theirs.id, system.id} <= {x["id"] for x in client.get("/api/activity/").json()["results"]}
    assert [x["id"] for x in client.get(f"/api/activity/?project={b.id}").json()["results"]] == [theirs.id]
