"""The activity feed moves to the core (mlops_dashboard.Activity): every row is copied with its id,
the content type (and so its permissions and admin log entries) follows, then the old table goes."""

from django.core.management.color import no_style
from django.db import migrations

COLUMNS = "id, title, description, user_id, action_type, status, severity_level, duration, metadata, created_at"


def _copy(apps, schema_editor, *, source: str, target: str, target_model) -> None:
    qn = schema_editor.quote_name
    schema_editor.execute(f"INSERT INTO {qn(target)} ({COLUMNS}) SELECT {COLUMNS} FROM {qn(source)}")
    connection = schema_editor.connection
    for sql in connection.ops.sequence_reset_sql(no_style(), [target_model]):
        schema_editor.execute(sql)


def _move_content_type(apps, *, old_label: str, new_label: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label=new_label, model="activity").exists():
        ContentType.objects.filter(app_label=old_label, model="activity").update(app_label=new_label)


def to_core(apps, schema_editor):
    _copy(apps, schema_editor, source="monitoring_activity", target="mlops_dashboard_activity",
          target_model=apps.get_model("mlops_dashboard", "Activity"))
    _move_content_type(apps, old_label="monitoring", new_label="mlops_dashboard")


def back_to_monitoring(apps, schema_editor):
    _copy(apps, schema_editor, source="mlops_dashboard_activity", target="monitoring_activity",
          target_model=apps.get_model("monitoring", "Activity"))
    schema_editor.execute(f"DELETE FROM {schema_editor.quote_name('mlops_dashboard_activity')}")
    _move_content_type(apps, old_label="mlops_dashboard", new_label="monitoring")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("mlops_dashboard", "0001_initial"),
        ("monitoring", "0003_default_alert_rules"),
    ]

    operations = [
        migrations.RunPython(to_core, back_to_monitoring),
        migrations.DeleteModel(name="Activity"),
    ]
