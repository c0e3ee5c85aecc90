from django.urls import path
from mlops_dashboard.routers import ApiRouter

from . import api, api_channels

router = ApiRouter()
router.register("alerts", api.AlertViewSet, basename="alert")
router.register("alert-rules", api.AlertRuleViewSet, basename="alert-rule")
router.register("anomalies", api.AnomalyViewSet, basename="anomaly")
router.register("anomaly/detect", api.DetectionViewSet, basename="anomaly-detection")
router.register("notification-channels", api_channels.NotificationChannelViewSet, basename="notification-channel")

urlpatterns = [
    path("monitoring/system/", api.SystemView.as_view(), name="monitoring-system"),
    path("monitoring/metrics/", api.MetricsView.as_view(), name="monitoring-metrics"),
    path("monitoring/services/", api.ServicesView.as_view(), name="monitoring-services"),
    path("account/notifications/", api.PersonalNotificationsView.as_view(), name="account-notifications-api"),
    path("anomaly/datasets/<int:dataset_id>/", api.DatasetAnomaliesView.as_view(), name="dataset-anomalies"),
    *router.urls,
]
