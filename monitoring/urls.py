from django.urls import path

from . import views, views_alerts, views_channels, views_silences, views_telemetry

app_name = "monitoring"

urlpatterns = [
    path("", views.index, name="index"),
    path("system/", views.system, name="system"),
    path("system/<str:group>/rows/", views.system_components, name="system-components"),
    path("system/workers/", views.system_workers, name="system-workers"),
    path("hosts/", views.hosts, name="hosts"),
    path("jobs/<str:kind>/<int:pk>/item/", views.job_item, name="job-item"),
    path("rules/", views.rule_create, name="rule-create"),
    path("rules/<int:pk>/", views.rule_update, name="rule-update"),
    path("rules/<int:pk>/toggle/", views.rule_toggle, name="rule-toggle"),
    path("alerts/<int:pk>/", views_alerts.alert_detail, name="alert-detail"),
    path("alerts/<int:pk>/body/", views_alerts.alert_detail_body, name="alert-detail-body"),
    path("alerts/<int:pk>/row/", views.alert_row, name="alert-row"),
    path("alerts/<int:pk>/item/", views.alert_item, name="alert-item"),
    path("anomalies/<int:pk>/row/", views.anomaly_row, name="anomaly-row"),
    path("channels/", views_channels.channel_create, name="channel-create"),
    path("channels/<int:pk>/toggle/", views_channels.channel_toggle, name="channel-toggle"),
    path("channels/<int:pk>/test/", views_channels.channel_test, name="channel-test"),
    path("channels/<int:pk>/delete/", views_channels.channel_delete, name="channel-delete"),
    path("channels/<int:pk>/row/", views_channels.channel_row, name="channel-row"),
    path("silences/section/", views_silences.silences_section, name="silences-section"),
    path("maintenance-windows/section/", views_silences.windows_section, name="windows-section"),
    path("datasets/<int:dataset_id>/anomalies/", views.dataset_anomalies_result, name="dataset-anomalies-result"),
    path("telemetry/<int:source_id>/anomalies/", views_telemetry.telemetry_anomalies, name="telemetry-anomalies"),
]
