from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("", views.index, name="index"),
    path("system/", views.system, name="system"),
    path("rules/", views.rule_create, name="rule-create"),
    path("rules/<int:pk>/", views.rule_update, name="rule-update"),
    path("rules/<int:pk>/toggle/", views.rule_toggle, name="rule-toggle"),
    path("alerts/<int:pk>/row/", views.alert_row, name="alert-row"),
    path("alerts/<int:pk>/item/", views.alert_item, name="alert-item"),
    path("anomalies/<int:pk>/row/", views.anomaly_row, name="anomaly-row"),
    path("datasets/<int:dataset_id>/anomalies/", views.dataset_anomalies_result, name="dataset-anomalies-result"),
]
