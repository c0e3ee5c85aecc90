from django.urls import path

from . import api

urlpatterns: list = [
    path("telemetry/", api.TelemetryIngestView.as_view(), name="api-telemetry-ingest"),
]
