"""API tokens: stored hashed, expiring, named, revocable one by one; a password change revokes them."""

import hashlib
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mlops_dashboard import auth_cache
from tests.factories import ApiTokenFactory, UserFactory

pytestmark = pytest.mark.django_db


def api_client(client, key):
    return client.__class__(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.fixture
def deletions():
    """ApiToken rows deleted through the ORM (what closes the sockets that stand on them)."""
    from mlops_dashboard.models import ApiToken

    deleted = []

    def note(sender, instance, **kwargs):
        deleted.append(instance.pk)

    post_delete.connect(note, sender=ApiToken, dispatch_uid="test_tokens.deletions")
    yield deleted
    post_delete.disconnect(sender=ApiToken, dispatch_uid="test_tokens.deletions")


@pytest.mark.parametrize("content_type", ["form", "json"])
def test_token_login_stores_only_a_digest_with_an_expiry(client, user, content_type):
    from mlops_dashboard.models import ApiToken

    body = {"username": "alice", "password": "alice-pass-123", "name": "nightly job"}
    response = (client.post("/api/auth/token/", body) if content_type == "form"
                else client.post("/api/auth/token/", body, content_type="application/json"))
    assert response.status_code == 200, response.content
    answer = response.json()
    key = answer["token"]
    row = ApiToken.objects.get(user=user)
    assert row.name == "nightly job" and answer["name"] == "nightly job" and answer["id"] == row.pk
    assert row.digest == hashlib.sha512(key.encode()).hexdigest() and key not in row.digest
    assert not ApiToken.objects.filter(digest=key).exists() and not ApiToken.objects.filter(token_key=key).exists()
    expected = timezone.now() + timedelta(days=settings.API_TOKEN_TTL_DAYS)
    assert abs((row.expiry - expected).total_seconds()) < 120
    assert api_client(client, key).get("/api/events/").status_code == 200


def test_an_expired_token_is_refused_with_401_problem_details_and_deleted(client, user, deletions):
    token = ApiTokenFactory(user=user)
    type(token).objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    auth_cache.forget_all()  # a change behind the ORM's back: no signal tells the process cache
    response = api_client(client, token.key).get("/api/events/")
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    assert "expired" in response.json()["detail"]
    assert deletions == [token.pk]


def test_a_wrong_or_absurd_key_is_a_401(client, user):
    token = ApiTokenFactory(user=user)
    wrong = token.key[:-1] + ("1" if token.key.endswith("0") else "0")  # the same token_key, another digest
    assert api_client(client, wrong).get("/api/events/").status_code == 401
    assert api_client(client, "x" * 100_000).get("/api/events/").status_code == 401


def test_last_use_is_written_at_most_once_a_minute(client, user):
    token = ApiTokenFactory(user=user)
    api = api_client(client, token.key)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            assert api.get("/api/events/").status_code == 200
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "apitoken" in q["sql"]]
    assert len(updates) == 1
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None

    type(token).objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(minutes=2))
    auth_cache.forget_all()  # a change behind the ORM's back: no signal tells the process cache
    assert api.get("/api/events/").status_code == 200
    token.refresh_from_db()
    assert token.last_used_at > first_use - timedelta(minutes=2)


def test_tokens_api_lists_creates_and_revokes_ones_own(client, user, other_user, deletions):
    client.force_login(user)
    created = client.post("/api/auth/tokens/", {"name": "notebook"}, content_type="application/json")
    assert created.status_code == 201
    key, token_id = created.json()["token"], created.json()["id"]
    theirs = ApiTokenFactory(user=other_user)

    listed = client.get("/api/auth/tokens/").json()["results"]
    assert [t["name"] for t in listed] == ["notebook"]
    assert set(listed[0]) == {"id", "name", "project", "scope", "created", "expiry", "last_used_at"}  # never the key nor its digest

    assert client.delete(f"/api/auth/tokens/{theirs.pk}/").status_code == 404
    assert client.delete(f"/api/auth/tokens/{token_id}/").status_code == 204
    assert deletions == [token_id]
    assert api_client(client, key).get("/api/events/").status_code == 401
    assert api_client(client, theirs.key).get("/api/events/").status_code == 200


def test_the_tokens_page_shows_a_new_key_once_and_revokes(client, user, deletions):
    client.force_login(user)
    assert client.get("/account/tokens/").status_code == 200
    response = client.post("/account/tokens/", {"name": "ci deploy"})
    assert response.status_code == 200 and response["Cache-Control"].startswith("max-age=0")
    key = response.context["new_key"]
    assert key and key in response.content.decode()
    page = client.get("/account/tokens/").content.decode()
    assert "ci deploy" in page and key not in page
    token = user.auth_token_set.get()
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    assert deletions == [token.pk]
    assert api_client(client, key).get("/api/events/").status_code == 401


def test_another_users_token_cannot_be_revoked_from_the_page(client, user, other_user):
    theirs = ApiTokenFactory(user=other_user)
    client.force_login(user)
    client.post(f"/account/tokens/{theirs.pk}/revoke/")
    assert type(theirs).objects.filter(pk=theirs.pk).exists()


def test_tokens_per_user_are_bounded(client, user, settings):
    settings.API_TOKENS_PER_USER = 2
    for _ in range(2):
        assert client.post("/api/auth/token/", {"username": "alice", "password": "alice-pass-123"}).status_code == 200
    refused = client.post("/api/auth/token/", {"username": "alice", "password": "alice-pass-123"})
    assert refused.status_code == 400 and "revoke one" in refused.json()["detail"]


def test_a_password_change_revokes_tokens_and_other_sessions_but_keeps_this_one(client, user, deletions):
    from django.test import Client

    tokens = [ApiTokenFactory(user=user), ApiTokenFactory(user=user)]
    theirs = ApiTokenFactory(user=UserFactory(username="bob"))
    elsewhere = Client()
    elsewhere.force_login(user)
    client.force_login(user)
    response = client.post("/account/password/", {
        "old_password": "alice-pass-123", "new_password1": "a-New-pass-456", "new_password2": "a-New-pass-456"})
    assert response.status_code == 302, response.content
    assert sorted(deletions) == sorted(t.pk for t in tokens)
    for token in tokens:
        assert api_client(client, token.key).get("/api/events/").status_code == 401
    assert api_client(client, theirs.key).get("/api/events/").status_code == 200
    assert client.get("/account/tokens/").status_code == 200  # this session stays
    assert elsewhere.get("/account/tokens/").status_code == 302  # the other one is logged out


def test_set_password_anywhere_revokes_but_other_saves_do_not(user, deletions):
    from mlops_dashboard.tokens import password_changed

    changed = []
    password_changed.connect(lambda sender, user, **kw: changed.append(user.pk), weak=False, dispatch_uid="t")
    try:
        token = ApiTokenFactory(user=user)
        user.first_name = "Alice"
        user.save()
        user.save(update_fields=["last_login"])
        assert deletions == [] and changed == []
        user.set_password("via-the-admin-789")  # the admin's password form, changepassword
        user.save()
        assert deletions == [token.pk] and changed == [user.pk]
    finally:
        password_changed.disconnect(dispatch_uid="t")


def test_the_admin_password_form_revokes(client, staff_user, user, deletions):
    token = ApiTokenFactory(user=user)
    client.force_login(staff_user)
    response = client.post(f"/admin/auth/user/{user.pk}/password/",
                           {"password1": "set-by-admin-321", "password2": "set-by-admin-321", "usable_password": "true"})
    assert response.status_code == 302, response.content
    assert deletions == [token.pk]


def test_a_rehash_on_login_is_not_a_password_change(client, user, deletions, settings):
    """Django re-hashes a stored password when its hasher's parameters changed (same password)."""
    from django.contrib.auth.hashers import make_password

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher",
                                 "django.contrib.auth.hashers.MD5PasswordHasher"]
    type(user).objects.filter(pk=user.pk).update(password=make_password("alice-pass-123", hasher="md5"))
    token = ApiTokenFactory(user=user)
    assert client.post("/api/auth/token/", {"username": "alice", "password": "alice-pass-123"}).status_code == 200
    user.refresh_from_db()
    assert user.password.startswith("pbkdf2_")  # re-hashed
    assert deletions == [] and type(token).objects.filter(pk=token.pk).exists()


def test_pruning_deletes_expired_tokens_through_the_orm(user, deletions):
    from mlops_dashboard.tasks import api_tokens_prune_expired

    live, old = ApiTokenFactory(user=user), ApiTokenFactory(user=user)
    type(old).objects.filter(pk=old.pk).update(expiry=timezone.now() - timedelta(days=1))
    auth_cache.forget_all()  # a change behind the ORM's back: no signal tells the process cache
    assert api_tokens_prune_expired() == 1
    assert deletions == [old.pk] and type(live).objects.filter(pk=live.pk).exists()
    assert "prune-expired-api-tokens" in settings.CELERY_BEAT_SCHEDULE


def test_the_admin_shows_tokens_without_digest_or_key_and_revokes(client, staff_user, user, deletions):
    token = ApiTokenFactory(user=user, name="backup script")
    client.force_login(staff_user)
    page = client.get("/admin/mlops_dashboard/apitoken/").content.decode()
    assert "backup script" in page and user.username in page
    assert token.digest not in page and token.key not in page and token.key[:15] not in page
    detail = client.get(f"/admin/mlops_dashboard/apitoken/{token.pk}/change/").content.decode()
    assert token.digest not in detail and token.key[:15] not in detail
    response = client.post("/admin/mlops_dashboard/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]})
    assert response.status_code == 302
    assert deletions == [token.pk]


def test_drf_tokens_are_gone():
    assert "rest_framework.authtoken" not in settings.INSTALLED_APPS
    assert "authtoken_token" not in connection.introspection.table_names()


def test_the_socket_takes_a_live_token_and_refuses_an_expired_or_revoked_one(open_socket, user):
    live, expired, revoked = ApiTokenFactory(user=user), ApiTokenFactory(user=user), ApiTokenFactory(user=user)
    type(expired).objects.filter(pk=expired.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    auth_cache.forget_all()  # a change behind the ORM's back: no signal tells the process cache
    revoked.delete()
    sock = open_socket(token=live.key, origin=None)
    sock.send({"type": "ping", "ts": 1})
    assert sock.recv()["type"] == "pong"
    live.refresh_from_db()
    assert live.last_used_at is not None
    for key in (expired.key, revoked.key):
        assert open_socket(token=key, origin=None).recv()["code"] == "unauthorized"
    assert not type(expired).objects.filter(pk=expired.pk).exists()


# --- project and scope ------------------------------------------------------------------------------


def _other_project(user, role="viewer", slug="other"):
    from tests.factories import ProjectFactory, member

    return member(user, role, ProjectFactory(slug=slug))


def test_a_token_limited_to_a_project_sees_only_that_project(client, user):
    from tests.factories import ProjectFactory

    other = _other_project(user)
    default = ProjectFactory()
    client.force_login(user)
    created = client.post("/api/auth/tokens/", {"name": "ci", "project": other.pk}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["project"] == other.pk and created.json()["scope"] == "all"
    limited = api_client(client, created.json()["token"])

    assert [p["slug"] for p in limited.get("/api/projects/").json()["results"]] == ["other"]
    assert limited.get(f"/api/projects/{default.pk}/").status_code == 404
    assert limited.get(f"/api/projects/{default.pk}/members/").status_code == 404
    assert limited.get(f"/api/projects/{other.pk}/members/").status_code == 200
    # alice maintains Default, but not through this token.
    assert limited.post(f"/api/projects/{default.pk}/members/", {"user": "alice", "role": "viewer"},
                        content_type="application/json").status_code == 404
    # The session (and an unlimited token) still sees both.
    assert {p["slug"] for p in client.get("/api/projects/").json()["results"]} == {"default", "other"}
    assert api_client(client, api_token_for_user(user)).get(f"/api/projects/{default.pk}/").status_code == 200


def api_token_for_user(user):
    from tests.factories import api_token_for

    return api_token_for(user)


def test_a_limited_token_cannot_make_an_unlimited_one(client, user):
    other = _other_project(user)
    client.force_login(user)
    key = client.post("/api/auth/tokens/", {"name": "ci", "project": other.pk}, content_type="application/json").json()["token"]
    limited = api_client(client, key)
    made = limited.post("/api/auth/tokens/", {"name": "escape"}, content_type="application/json")
    assert made.status_code == 201 and made.json()["project"] == other.pk
    default_id = client.get("/api/projects/").json()["results"][0]["id"]
    assert limited.post("/api/auth/tokens/", {"name": "escape", "project": default_id},
                        content_type="application/json").status_code == 404


def test_a_token_for_a_project_one_cannot_see_is_refused(client, user):
    from tests.factories import ProjectFactory

    hidden = ProjectFactory(slug="hidden")
    client.force_login(user)
    response = client.post("/api/auth/tokens/", {"name": "x", "project": hidden.pk}, content_type="application/json")
    assert response.status_code == 404
    for bad in ({"name": "x", "project": "abc"}, {"name": "x", "scope": "everything"}):
        response = client.post("/api/auth/tokens/", bad, content_type="application/json")
        assert response.status_code == 400, bad
    from mlops_dashboard.models import ApiToken

    assert not ApiToken.objects.filter(user=user).exists()


@pytest.mark.parametrize("scope", ["predict", "telemetry"])
def test_a_scoped_token_is_refused_elsewhere_with_403_naming_its_scope(client, user, scope):
    client.force_login(user)
    key = client.post("/api/auth/tokens/", {"name": "s", "scope": scope}, content_type="application/json").json()["token"]
    scoped = api_client(client, key)
    for path in ("/api/projects/", "/api/events/", "/api/auth/tokens/", "/api/activity/"):
        response = scoped.get(path)
        assert response.status_code == 403, path
        assert scope in response.json()["detail"]
    assert scoped.post("/api/auth/tokens/", {"name": "more"}, content_type="application/json").status_code == 403


def test_a_scoped_token_reaches_a_view_declaring_its_scope(rf, user):
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from mlops_dashboard.tokens import api_token_create

    class PredictView(APIView):
        token_scopes = ("predict",)

        def get(self, request):
            return Response({"ok": True})

    class OtherView(APIView):
        def get(self, request):
            return Response({"ok": True})

    _, predict_key = api_token_create(user=user, name="p", scope="predict")
    _, telemetry_key = api_token_create(user=user, name="t", scope="telemetry")
    _, all_key = api_token_create(user=user, name="a")

    def call(view, key):
        return view.as_view()(rf.get("/x/", HTTP_AUTHORIZATION=f"Token {key}")).status_code

    assert call(PredictView, predict_key) == 200
    assert call(PredictView, all_key) == 200
    assert call(PredictView, telemetry_key) == 403
    assert call(OtherView, predict_key) == 403
    assert call(OtherView, all_key) == 200


def test_the_tokens_page_picks_project_and_scope(client, user):
    from mlops_dashboard.models import ApiToken

    other = _other_project(user)
    client.force_login(user)
    page = client.get("/account/tokens/")
    assert f'value="{other.pk}"' in page.content.decode() and 'value="predict"' in page.content.decode()
    response = client.post("/account/tokens/", {"name": "serving", "project": other.pk, "scope": "predict"})
    assert response.status_code == 200
    token = ApiToken.objects.get(user=user, name="serving")
    assert (token.project_id, token.scope) == (other.pk, "predict")
    assert "predict" in response.content.decode() and "Other" in response.content.decode()
    from tests.factories import ProjectFactory

    hidden = ProjectFactory(slug="hidden")
    refused = client.post("/account/tokens/", {"name": "bad", "project": hidden.pk, "scope": "all"})
    assert refused.status_code == 400
    assert not ApiToken.objects.filter(name="bad").exists()


def test_only_an_all_token_may_open_a_socket(user):
    from mlops_dashboard.tokens import api_token_create, token_allows_socket

    assert token_allows_socket(api_token_create(user=user, name="a")[0])
    assert not token_allows_socket(api_token_create(user=user, name="p", scope="predict")[0])
    assert not token_allows_socket(api_token_create(user=user, name="t", scope="telemetry")[0])


def test_the_admin_lists_tokens_with_project_and_scope(client, staff_user, user):
    from mlops_dashboard.tokens import api_token_create

    other = _other_project(user)
    api_token_create(user=user, name="serving", project=other, scope="predict")
    client.force_login(staff_user)
    page = client.get("/admin/mlops_dashboard/apitoken/?scope__exact=predict").content.decode()
    assert "serving" in page and "Other" in page
    assert client.get("/admin/mlops_dashboard/apitoken/?scope__exact=telemetry").content.decode().count("serving") == 0
