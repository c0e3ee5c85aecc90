"""The stock anomaly rule (`severe-anomaly`) as the anomaly settings now expect it: priority medium
(anomalies open at low or medium), no score threshold (the per-metric settings of monitoring/anomaly.py
decide), the new description. Only the fields an installation has left at their old stock values
change; a rule staff edited keeps its edits."""

from django.db import migrations

OLD = {
    "threshold": 12.0,
    "priority": "high",
    "description": "A metric moved far outside its recent range (robust score of 12 or more).",
}


def _new():
    from monitoring.defaults import DEFAULT_RULES

    spec = next(r for r in DEFAULT_RULES if r["slug"] == "severe-anomaly")
    return {"threshold": spec.get("threshold"), "priority": spec["priority"], "description": spec["description"]}


def _swap(apps, frm: dict, to: dict):
    rule = apps.get_model("monitoring", "AlertRule").objects.filter(slug="severe-anomaly").first()
    if rule is None:
        return
    changed = [f for f, value in frm.items() if getattr(rule, f) == value]
    for field in changed:
        setattr(rule, field, to[field])
    if changed:
        rule.save(update_fields=changed)


def forwards(apps, schema_editor):
    _swap(apps, OLD, _new())


def backwards(apps, schema_editor):
    _swap(apps, _new(), OLD)


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0009_notifications")]

    operations = [migrations.RunPython(forwards, backwards)]
