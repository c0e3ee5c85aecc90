from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "monitoring"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from . import signals

        user_logged_in.connect(signals.record_login, dispatch_uid="monitoring.record_login")
