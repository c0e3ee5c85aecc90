from django.apps import AppConfig


class MlopsDashboardConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "mlops_dashboard"
    verbose_name = "MLOps dashboard"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in

        from . import retention
        from .activity import record_login

        user_logged_in.connect(record_login, dispatch_uid="mlops_dashboard.record_login")
        retention.register(retention.StorageKind(
            key="activity", label="Activity feed", models=("mlops_dashboard.Activity",),
            setting="RETENTION_ACTIVITY_DAYS", pruner="mlops_dashboard.activity.activities_prune",
        ))
        # The audit log keeps its own time, apart from the feed's (RETENTION_ACTIVITY_DAYS).
        retention.register(retention.StorageKind(
            key="audit", label="Audit log", models=("mlops_dashboard.AuditEntry",),
            setting="AUDIT_RETENTION_DAYS", pruner="mlops_dashboard.audit.audit_prune",
        ))
        retention.register(retention.StorageKind(
            key="sessions", label="Sessions", models=("sessions.Session",),
            pruner="mlops_dashboard.retention.sessions_prune",
        ))

        from . import audit

        audit.connect_signals()  # logins, logouts, API tokens made and revoked

        from .events import sockets

        sockets.connect_signals()  # a socket follows its account (logout, deactivation, password, token)

        from .tokens import connect_signals

        connect_signals()  # a password change revokes the user's API tokens

        from . import auth_cache

        auth_cache.connect_signals()  # cached tokens and roles follow every change within a second

        from . import memberships

        memberships.connect_signals()  # DEFAULT_PROJECT_ROLE: new users join "Default"
