from django.db import migrations


def install_defaults(apps, schema_editor):
    from monitoring.defaults import install

    install(apps.get_model("monitoring", "AlertRule"))


def remove_defaults(apps, schema_editor):
    from monitoring.defaults import DEFAULT_RULES

    apps.get_model("monitoring", "AlertRule").objects.filter(slug__in=[r["slug"] for r in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0002_metrics_alerts_anomalies")]

    operations = [migrations.RunPython(install_defaults, remove_defaults)]
