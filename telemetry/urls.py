from django.urls import path

from . import views

app_name = "telemetry"

urlpatterns = [
    path("", views.index, name="index"),
    path("sources/<int:pk>/", views.source_detail, name="source"),
    path("sources/<int:pk>/card/", views.source_card, name="source-card"),
    path("sources/<int:pk>/registry/", views.source_update, name="source-update"),
    path("sources/<int:pk>/metrics/<int:metric_id>/registry/", views.metric_update, name="metric-update"),
]
