"""Notification channels through the API: the contract (write-only URL, masking, PATCH keeping the
URL), who may do what (400/403/404/409), the audit without secrets, and the test send answered 202
and delivered by the real session worker to a real HTTP server and a real SMTP server."""

from __future__ import annotations

import pytest

from mlops_dashboard.activity import Activity
from mlops_dashboard.models import AuditEntry
from monitoring.models import Delivery, NotificationChannel
from tests.factories import NotificationChannelFactory, ProjectFactory, UserFactory, member
from tests.procs import wait_for
from tests.receivers import SmtpServer

SECRET_URL = "jsons://hookuser:Sup3rS3cret@hooks.example.com:8443/T0KENPATH/x?token=QueryT0ken"
SECRETS = ("Sup3rS3cret", "T0KENPATH", "QueryT0ken", "hookuser")


def _body(**fields) -> dict:
    return {"name": "ops hook", "url": SECRET_URL, **fields}


@pytest.fixture
def staff_api(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def api(client, user):
    client.force_login(user)
    return client


def _no_secrets(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


@pytest.mark.django_db
def test_staff_create_a_global_channel_the_url_is_write_only_and_masked(staff_api):
    response = staff_api.post("/api/notification-channels/", _body(min_priority="high"), content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert "url" not in body and body["project"] is None
    assert body["url_masked"] == "jsons://***@hooks.example.com:8443/***"
    assert body["service"] and body["min_priority"] == "high" and body["enabled"] and body["default_route"]
    assert body["consecutive_failures"] == 0 and body["last_error"] == "" and body["last_sent_at"] is None
    channel = NotificationChannel.objects.get(pk=body["id"])
    assert channel.url == SECRET_URL
    for read in (staff_api.get(f"/api/notification-channels/{channel.pk}/"), staff_api.get("/api/notification-channels/")):
        _no_secrets(read.content.decode())
    assert AuditEntry.objects.filter(action="create", object_id=str(channel.pk)).exists()
    for entry in AuditEntry.objects.all():
        _no_secrets(f"{entry.summary} {entry.object_repr}")
    for activity in Activity.objects.all():
        _no_secrets(f"{activity.title} {activity.description} {activity.metadata}")


@pytest.mark.django_db
def test_a_patch_without_url_keeps_it_and_with_url_replaces_it(staff_api):
    channel_id = staff_api.post("/api/notification-channels/", _body(), content_type="application/json").json()["id"]
    response = staff_api.patch(f"/api/notification-channels/{channel_id}/", {"enabled": False, "min_priority": "critical"},
                               content_type="application/json")
    assert response.status_code == 200, response.content
    channel = NotificationChannel.objects.get(pk=channel_id)
    assert channel.url == SECRET_URL and not channel.enabled and channel.min_priority == "critical"
    response = staff_api.patch(f"/api/notification-channels/{channel_id}/", {"url": "json://127.0.0.1:9/other"},
                               content_type="application/json")
    assert response.status_code == 200 and response.json()["url_masked"] == "json://127.0.0.1:9/***"
    channel = NotificationChannel.objects.get(pk=channel_id)
    assert channel.url == "json://127.0.0.1:9/other"
    assert not channel.enabled and channel.min_priority == "critical" and channel.default_route  # not reset to defaults
    summaries = " ".join(AuditEntry.objects.values_list("summary", flat=True))
    assert "url: changed" in summaries or "json://127.0.0.1:9/***" in summaries
    _no_secrets(summaries)


@pytest.mark.django_db
@pytest.mark.parametrize(("body", "field"), [
    ({"url": "nosuchservice://x/y"}, "url"),
    ({"url": "not a url"}, "url"),
    ({"url": ""}, "url"),
    ({"url": "json://h/" + "a" * 2100}, "url"),
    ({"min_priority": "urgent"}, "min_priority"),
    ({"name": ""}, "name"),
    ({"name": "n" * 101}, "name"),
    ({"project": 0}, "project"),
    ({"project": 999999}, "project"),
])
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(staff_api, body, field):
    response = staff_api.post("/api/notification-channels/", _body(**body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not NotificationChannel.objects.exists()


@pytest.mark.django_db
def test_a_name_taken_in_the_same_scope_is_a_409_but_free_in_another(staff_api, project):
    assert staff_api.post("/api/notification-channels/", _body(), content_type="application/json").status_code == 201
    response = staff_api.post("/api/notification-channels/", _body(), content_type="application/json")
    assert response.status_code == 409 and "ops hook" in response.json()["detail"]
    response = staff_api.post("/api/notification-channels/", _body(project=project.pk), content_type="application/json")
    assert response.status_code == 201
    other = staff_api.post("/api/notification-channels/", _body(name="other"), content_type="application/json").json()
    response = staff_api.patch(f"/api/notification-channels/{other['id']}/", {"name": "ops hook"},
                               content_type="application/json")
    assert response.status_code == 409
    assert NotificationChannel.objects.count() == 3


@pytest.mark.django_db
def test_who_manages_which_channel(client, user, project):
    """alice maintains the default project: she manages its channels, not the global ones (403 naming
    admin); an editor gets 403 naming maintainer; another project's channel is a 404 and absent."""
    glob = NotificationChannelFactory(name="global")
    mine = NotificationChannelFactory(name="mine", project=project)
    elsewhere = NotificationChannelFactory(name="elsewhere", project=ProjectFactory(slug="beta"))
    client.force_login(user)
    listed = client.get("/api/notification-channels/").json()
    names = {c["name"] for c in (listed["results"] if isinstance(listed, dict) else listed)}
    assert names == {"global", "mine"}
    only = client.get(f"/api/notification-channels/?project={project.pk}").json()
    assert {c["name"] for c in (only["results"] if isinstance(only, dict) else only)} == {"mine"}
    assert client.get(f"/api/notification-channels/{elsewhere.pk}/").status_code == 404
    assert client.patch(f"/api/notification-channels/{elsewhere.pk}/", {"enabled": False},
                        content_type="application/json").status_code == 404
    denied = client.post("/api/notification-channels/", _body(), content_type="application/json")
    assert denied.status_code == 403 and "admin" in denied.json()["detail"]
    denied = client.patch(f"/api/notification-channels/{glob.pk}/", {"enabled": False}, content_type="application/json")
    assert denied.status_code == 403 and "admin" in denied.json()["detail"]
    assert client.post(f"/api/notification-channels/{glob.pk}/test/").status_code == 403
    beta = ProjectFactory(slug="gamma")
    assert client.post("/api/notification-channels/", _body(project=beta.pk),
                       content_type="application/json").status_code == 404
    assert client.post("/api/notification-channels/", _body(project=project.pk),
                       content_type="application/json").status_code == 201
    assert client.patch(f"/api/notification-channels/{mine.pk}/", {"default_route": False},
                        content_type="application/json").status_code == 200
    editor = UserFactory(username="eddie")
    member(editor, "editor", project)
    client.force_login(editor)
    denied = client.delete(f"/api/notification-channels/{mine.pk}/")
    assert denied.status_code == 403 and "maintainer" in denied.json()["detail"]
    client.force_login(user)
    assert client.delete(f"/api/notification-channels/{mine.pk}/").status_code == 204
    assert not NotificationChannel.objects.filter(pk=mine.pk).exists()
    assert NotificationChannel.objects.filter(pk=glob.pk, enabled=True).exists()


@pytest.mark.django_db
def test_the_schema_documents_the_endpoints(staff_api):
    schema = staff_api.get("/api/schema/?format=json")
    if schema.status_code != 200:
        pytest.skip("no schema endpoint at /api/schema/")
    paths = schema.json()["paths"]
    test = paths["/api/notification-channels/{id}/test/"]["post"]["responses"]
    assert {"202", "403", "404"} <= set(test)
    create = paths["/api/notification-channels/"]["post"]["responses"]
    assert {"201", "400", "403", "409"} <= set(create)


# --- the test send, through the real worker ----------------------------------------------------------


def _delivery_done(delivery_id: int) -> Delivery:
    wait_for(lambda: Delivery.objects.filter(pk=delivery_id).exclude(status="pending").exists(), timeout=60,
             message=f"delivery {delivery_id} to finish")
    return Delivery.objects.get(pk=delivery_id)


@pytest.mark.django_db(transaction=True)
def test_send_test_answers_202_and_reaches_a_webhook(client, staff_user, worker, webhook_server, events):
    client.force_login(staff_user)
    channel = NotificationChannelFactory(name="hook", url=webhook_server.url())
    response = client.post(f"/api/notification-channels/{channel.pk}/test/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "pending" and body["channel"] == channel.pk and body["kind"] == "test"
    (received,) = webhook_server.wait(1)
    assert "Test from the MLOps dashboard: hook" in received["json"]["title"]
    delivery = _delivery_done(body["id"])
    assert delivery.status == "sent" and delivery.attempts == 1
    channel.refresh_from_db()
    assert channel.last_sent_at is not None and channel.consecutive_failures == 0
    wait_for(lambda: events("notification_sent"), timeout=30, message="notification_sent")
    events.expect("notification_sent", kind="test", channel_id=channel.pk, alert_id=None, attempt=1)


@pytest.mark.django_db(transaction=True)
def test_send_test_reaches_a_real_smtp_server(client, user, project, worker, smtp_server):
    """A project's maintainer tests their project's email channel."""
    client.force_login(user)
    created = client.post("/api/notification-channels/", _body(name="mail", project=project.pk,
                                                               url=smtp_server.url(to="oncall@example.com")),
                          content_type="application/json").json()
    assert created["url_masked"].startswith("mailto://") and "oncall" not in created["url_masked"]
    response = client.post(f"/api/notification-channels/{created['id']}/test/")
    assert response.status_code == 202
    (message,) = smtp_server.wait(1)
    assert message["Subject"].startswith("Test from the MLOps dashboard: mail")
    assert message.envelope_to == ["oncall@example.com"]
    assert "If you read this, it works." in SmtpServer.text(message)
    assert _delivery_done(response.json()["id"]).status == "sent"


# --- the admin -----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_never_shows_the_url_and_keeps_it_when_left_empty(client, staff_user):
    client.force_login(staff_user)
    page = client.get("/admin/monitoring/notificationchannel/add/").content.decode()
    assert 'type="password"' in page
    response = client.post("/admin/monitoring/notificationchannel/add/", {
        "name": "admin hook", "new_url": SECRET_URL, "min_priority": "medium", "enabled": "on", "default_route": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    channel = NotificationChannel.objects.get(name="admin hook")
    assert channel.url == SECRET_URL and channel.url_masked.startswith("jsons://***@hooks.example.com")
    for url in ("/admin/monitoring/notificationchannel/", f"/admin/monitoring/notificationchannel/{channel.pk}/change/"):
        page = client.get(url).content.decode()
        assert "hooks.example.com" in page
        _no_secrets(page)
    response = client.post(f"/admin/monitoring/notificationchannel/{channel.pk}/change/", {
        "name": "admin hook", "new_url": "", "min_priority": "high", "default_route": "on"})
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.url == SECRET_URL and channel.min_priority == "high" and not channel.enabled
    response = client.post("/admin/monitoring/notificationchannel/add/", {
        "name": "bad", "new_url": "nosuchservice://x", "min_priority": "low"})
    assert response.status_code == 200 and not NotificationChannel.objects.filter(name="bad").exists()
    assert AuditEntry.objects.filter(action="create", object_id=str(channel.pk)).exists()


# --- the Monitoring page's section ------------------------------------------------------------------------


def _form(**fields) -> dict:
    body = {"name": "page hook", "url": SECRET_URL, "min_priority": "medium", "default_route": "on", "project": "",
            **fields}
    return {f"channel-{k}": v for k, v in body.items()}


@pytest.mark.django_db
def test_the_page_creates_lists_toggles_tests_and_deletes_a_channel(client, user, project):
    client.force_login(user)
    page = client.get("/monitoring/").content.decode()
    assert 'id="channels"' in page and 'id="channel-submit"' in page
    response = client.post("/monitoring/channels/", _form(project=project.pk))
    assert response.status_code == 302 and response["Location"].endswith("#channels")
    channel = NotificationChannel.objects.get(name="page hook")
    assert channel.project_id == project.pk and channel.url == SECRET_URL and channel.min_priority == "medium"
    page = client.get("/monitoring/").content.decode()
    assert f'data-channel-id="{channel.pk}"' in page and "jsons://***@hooks.example.com:8443/***" in page
    _no_secrets(page)
    row = client.get(f"/monitoring/channels/{channel.pk}/row/").content.decode()
    assert "No delivery yet" in row and 'data-action="test"' in row
    assert client.post(f"/monitoring/channels/{channel.pk}/test/").status_code == 302
    row = client.get(f"/monitoring/channels/{channel.pk}/row/").content.decode()
    assert 'data-delivery-status="pending"' in row and "Test" in row
    assert client.post(f"/monitoring/channels/{channel.pk}/toggle/").status_code == 302
    assert not NotificationChannel.objects.get(pk=channel.pk).enabled
    assert client.post(f"/monitoring/channels/{channel.pk}/delete/").status_code == 302
    assert not NotificationChannel.objects.filter(pk=channel.pk).exists()


@pytest.mark.django_db
def test_the_page_form_says_what_is_wrong_without_echoing_the_url(client, user, project):
    client.force_login(user)
    response = client.post("/monitoring/channels/", _form(url="nosuchservice://s3cr3tT0ken/x", project=project.pk))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'data-error-for="channel-url"' in page and "s3cr3tT0ken" not in page
    assert not NotificationChannel.objects.exists()
    NotificationChannelFactory(name="page hook", project=project)
    response = client.post("/monitoring/channels/", _form(project=project.pk))
    assert response.status_code == 400 and 'data-error-for="channel-name"' in response.content.decode()
    # alice is no admin: a global channel is refused, naming the role.
    response = client.post("/monitoring/channels/", _form(name="global one"))
    assert response.status_code == 403 and not NotificationChannel.objects.filter(name="global one").exists()


@pytest.mark.django_db
def test_a_viewer_sees_the_channels_masked_with_locked_buttons(client, project):
    viewer = UserFactory(username="vic")
    member(viewer, "viewer", project)
    channel = NotificationChannelFactory(name="ops", url=SECRET_URL, url_masked="jsons://***@hooks.example.com:8443/***",
                                         project=project)
    client.force_login(viewer)
    page = client.get("/monitoring/").content.decode()
    assert f'data-channel-id="{channel.pk}"' in page and 'id="channel-form-locked"' in page
    row = client.get(f"/monitoring/channels/{channel.pk}/row/").content.decode()
    assert "disabled" in row and "maintainer" in row and 'data-action="test"' not in row
    _no_secrets(page + row)
    assert client.post(f"/monitoring/channels/{channel.pk}/test/").status_code == 403
    other = NotificationChannelFactory(name="theirs", project=ProjectFactory(slug="theirs"))
    assert client.get(f"/monitoring/channels/{other.pk}/row/").status_code == 404
    assert f'data-channel-id="{other.pk}"' not in page
