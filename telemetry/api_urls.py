from django.urls import path, re_path

from mlops_dashboard.routers import ApiRouter

from . import api, api_read
from .models import NAME_PATTERN

ID = ApiRouter.ID

urlpatterns: list = [
    path("telemetry/", api.TelemetryIngestView.as_view(), name="api-telemetry-ingest"),
    path("telemetry/import/", api.TelemetryImportView.as_view(), name="api-telemetry-import"),
    re_path(r"^telemetry/imports/(?P<pk>[0-9]{1,18})/$", api.TelemetryImportDetailView.as_view(),
            name="api-telemetry-import-detail"),
    path("telemetry/sources/", api_read.SourceViewSet.as_view({"get": "list"}), name="api-telemetry-sources"),
    re_path(rf"^telemetry/sources/(?P<pk>{ID})/$", api_read.SourceViewSet.as_view(
        {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}), name="api-telemetry-source"),
    re_path(rf"^telemetry/sources/(?P<pk>{ID})/metrics/(?P<name>{NAME_PATTERN})/$",
            api_read.MetricRegistryView.as_view(), name="api-telemetry-source-metric"),
    path("telemetry/series/", api_read.SeriesView.as_view(), name="api-telemetry-series"),
]
