"""SPECTACULAR_SETTINGS (drf-spectacular), imported by settings.py: how the OpenAPI schema at /api/schema/
names and presents the API. Nothing here comes from the environment."""

SPECTACULAR_SETTINGS = {
    "TITLE": "MLOps Dashboard API",
    "DESCRIPTION": "Datasets, training, models, pipelines and monitoring. Live events: see /ws/.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # One clear name per choice set in the schema (several models have a `status` field).
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "mlops_dashboard.jobs.JobStatus",
        "DatasetStatusEnum": "datasets.models.Dataset.Status",
        "ModelVersionStatusEnum": "training.models.ModelVersion.Status",
        "StepStatusEnum": "pipelines.models.StepStatus",
        "ActivitySeverityEnum": "mlops_dashboard.models.Activity.Severity",
        "AnomalySeverityEnum": "monitoring.models.Anomaly.Severity",
        "AlertStatusEnum": "monitoring.models.Alert.Status",
        "DeliveryStatusEnum": "monitoring.models.Delivery.Status",
    },
    # Swagger UI from the installed package, not a CDN: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
