"""Migrations that move data keep every row: the activity feed moving into the core, and the Celery
task names stored in beat's PeriodicTask rows."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(*targets):
    """Migrate the test database to `targets` (all the way when none); the models as they were there."""
    executor = MigrationExecutor(connection)
    targets = list(targets) or executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets, at_end=True).apps


def test_activity_rows_move_into_the_core_with_their_ids_and_users(django_user_model):
    old = migrate(("monitoring", "0003_default_alert_rules"), ("mlops_dashboard", "0002_celery_task_names"))
    user = old.get_model("auth", "User").objects.create(username="mover")
    Activity = old.get_model("monitoring", "Activity")
    first = Activity.objects.create(title="Dataset uploaded: churn", action_type="upload", user_id=user.pk,
                                    metadata={"dataset_id": 3})
    Activity.objects.create(title="gone", action_type="upload").delete()
    last = Activity.objects.create(title="Model deployed", action_type="deploy", severity_level="success")

    new = migrate()
    moved = new.get_model("mlops_dashboard", "Activity").objects.order_by("pk")
    assert [(a.pk, a.title, a.user_id, a.metadata) for a in moved] == [
        (first.pk, "Dataset uploaded: churn", user.pk, {"dataset_id": 3}),
        (last.pk, "Model deployed", None, {}),
    ]
    from mlops_dashboard.models import Activity as CoreActivity

    assert CoreActivity.objects.create(title="next", action_type="x").pk > last.pk  # the sequence follows
    assert "monitoring_activity" not in connection.introspection.table_names()


def test_stored_periodic_tasks_are_renamed_to_the_new_task_names():
    old = migrate(("mlops_dashboard", "0001_initial"), ("django_celery_beat", "0019_alter_periodictasks_options"))
    PeriodicTask = old.get_model("django_celery_beat", "PeriodicTask")
    Interval = old.get_model("django_celery_beat", "IntervalSchedule")
    every = Interval.objects.create(every=10, period="seconds")
    PeriodicTask.objects.create(name="reap-stale-jobs", task="jobs.reap_stale", interval=every)
    PeriodicTask.objects.create(name="kick", task="pipelines.runs_kick", interval=every)
    PeriodicTask.objects.create(name="pipeline-7", task="pipelines.pipeline_run_scheduled", interval=every)

    new = migrate()
    names = dict(new.get_model("django_celery_beat", "PeriodicTask").objects.values_list("name", "task"))
    assert names["reap-stale-jobs"] == "mlops_dashboard.jobs_recover"
    assert names["kick"] == "pipelines.pipeline_runs_kick"
    assert names["pipeline-7"] == "pipelines.pipeline_run_scheduled"

    from mlops_dashboard.celery import app

    app.loader.import_default_modules()
    assert set(names.values()) <= set(app.tasks)  # every stored name is a registered task


def test_drf_plaintext_tokens_become_hashed_and_their_old_keys_keep_working(client):
    """A database from before knox: DRF's `authtoken_token` with 40-hex plaintext keys."""
    from importlib import import_module

    old = migrate(("mlops_dashboard", "0002_celery_task_names"))
    executor = MigrationExecutor(connection)
    before = executor.loader.project_state(("mlops_dashboard", "0002_celery_task_names"), at_end=True)
    create_token_table = import_module("rest_framework.authtoken.migrations.0001_initial").Migration.operations[0]
    after = before.clone()
    create_token_table.state_forwards("authtoken", after)
    with connection.schema_editor() as editor:
        create_token_table.database_forwards("authtoken", editor, before, after)
    User = old.get_model("auth", "User")
    alice = User.objects.create(username="alice", password="x")
    bob = User.objects.create(username="bob", password="x")
    Token = after.apps.get_model("authtoken", "Token")
    keys = {"alice": "0123456789abcdef0123456789abcdef01234567", "bob": "fedcba9876543210fedcba9876543210fedcba98"}
    Token.objects.create(key=keys["alice"], user_id=alice.pk)
    Token.objects.create(key=keys["bob"], user_id=bob.pk)

    migrate()
    assert "authtoken_token" not in connection.introspection.table_names()
    from mlops_dashboard.models import ApiToken

    rows = ApiToken.objects.select_related("user").order_by("user__username")
    assert [r.user.username for r in rows] == ["alice", "bob"]
    for row in rows:
        assert keys[row.user.username] not in (row.digest, row.token_key) and row.expiry is not None
        response = client.get("/api/events/", HTTP_AUTHORIZATION=f"Token {keys[row.user.username]}")
        assert response.status_code == 200, response.content
    assert client.get("/api/events/", HTTP_AUTHORIZATION=f"Token {'0' * 40}").status_code == 401
