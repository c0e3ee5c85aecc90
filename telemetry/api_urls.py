from django.urls import path, re_path

from . import api

urlpatterns: list = [
    path("telemetry/", api.TelemetryIngestView.as_view(), name="api-telemetry-ingest"),
    path("telemetry/import/", api.TelemetryImportView.as_view(), name="api-telemetry-import"),
    re_path(r"^telemetry/imports/(?P<pk>[0-9]{1,18})/$", api.TelemetryImportDetailView.as_view(),
            name="api-telemetry-import-detail"),
]
