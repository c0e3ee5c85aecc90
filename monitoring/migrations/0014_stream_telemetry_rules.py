"""The rules of telemetry's alerts (kinds telemetry_anomaly and telemetry_silent), installed on
existing databases; a new one gets them with the other default rules."""

from django.db import migrations, models

SLUGS = ("telemetry-anomaly", "telemetry-silent")


def install(apps, schema_editor):
    from monitoring.defaults import DEFAULT_RULES

    AlertRule = apps.get_model("monitoring", "AlertRule")
    for spec in DEFAULT_RULES:
        if spec["slug"] in SLUGS:
            AlertRule.objects.get_or_create(slug=spec["slug"], defaults={k: v for k, v in spec.items() if k != "slug"})


def uninstall(apps, schema_editor):
    apps.get_model("monitoring", "AlertRule").objects.filter(slug__in=SLUGS).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('monitoring', '0013_range_telemetry_detection'),
    ]

    operations = [
        migrations.AlterField(
            model_name='alertrule',
            name='kind',
            field=models.CharField(choices=[('metric', 'Metric threshold'), ('worker_missing', 'Worker missing'), ('job_failed', 'Processing job failed'), ('training_failed', 'Training job failed'), ('pipeline_failed', 'Pipeline run failed'), ('job_stalled', 'Job stalled'), ('anomaly', 'Severe metric anomaly'), ('channel_failing', 'Notification channel failing'), ('telemetry_anomaly', 'Telemetry anomaly'), ('telemetry_silent', 'Telemetry source silent'), ('custom', 'Raised by an app')], db_index=True, default='metric', max_length=20),
        ),
        migrations.RunPython(install, uninstall),
    ]
