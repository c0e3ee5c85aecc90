from django.apps import AppConfig


class MlopsDashboardConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mlops_dashboard"
    verbose_name = "MLOps dashboard"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from .activity import record_login

        user_logged_in.connect(record_login, dispatch_uid="mlops_dashboard.record_login")

        from .tokens import connect_signals

        connect_signals()
