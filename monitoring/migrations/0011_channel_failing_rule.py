"""The rule of a failing notification channel's alert (kind channel_failing), installed on existing
databases; a new one gets it with the other default rules."""

from django.db import migrations, models

SLUG = "notification-channel-failing"


def install(apps, schema_editor):
    from monitoring.defaults import DEFAULT_RULES

    spec = next(r for r in DEFAULT_RULES if r["slug"] == SLUG)
    apps.get_model("monitoring", "AlertRule").objects.get_or_create(
        slug=SLUG, defaults={k: v for k, v in spec.items() if k != "slug"})


def uninstall(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(slug=SLUG).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0010_anomaly_rule_priority'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alertrule',
            name='kind',
            field=models.CharField(choices=[('metric', 'Metric threshold'), ('worker_missing', 'Worker missing'), ('job_failed', 'Processing job failed'), ('training_failed', 'Training job failed'), ('pipeline_failed', 'Pipeline run failed'), ('job_stalled', 'Job stalled'), ('anomaly', 'Severe metric anomaly'), ('channel_failing', 'Notification channel failing'), ('custom', 'Raised by an app')], db_index=True, default='metric', max_length=20),
        ),
        migrations.RunPython(install, uninstall),
    ]
