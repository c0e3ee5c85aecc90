from django.urls import path
from mlops_dashboard.routers import ApiRouter

from . import api, api_channels, api_silences

router = ApiRouter()
router.register("alerts", api.AlertViewSet, basename="alert")
router.register("alert-rules", api.AlertRuleViewSet, basename="alert-rule")
router.register("anomalies", api.AnomalyViewSet, basename="anomaly")
router.register("anomaly/detect", api.DetectionViewSet, basename="anomaly-detection")
router.register("notification-channels", api_channels.NotificationChannelViewSet, basename="notification-channel")
router.register("silences", api_silences.SilenceViewSet, basename="silence")
router.register("maintenance-windows", api_silences.MaintenanceWindowViewSet, basename="maintenance-window")

urlpatterns = [
    path("monitoring/system/", api.SystemView.as_view(), name="monitoring-system"),
    path("monitoring/metrics/", api.MetricsView.as_view(), name="monitoring-metrics"),
    path("monitoring/services/", api.ServicesView.as_view(), name="monitoring-services"),
    path("account/notifications/", api.PersonalNotificationsView.as_view(), name="account-notifications-api"),
    path("anomaly/datasets/<int:dataset_id>/", api.DatasetAnomaliesView.as_view(), name="dataset-anomalies"),
    path("alerts/<int:pk>/snooze/", api_silences.AlertSnoozeView.as_view(), name="alert-snooze"),
    *router.urls,
]
