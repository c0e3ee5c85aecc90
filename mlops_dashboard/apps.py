from django.apps import AppConfig


class MlopsDashboardConfig(AppConfig):
    name = "mlops_dashboard"
    verbose_name = "MLOps dashboard"
