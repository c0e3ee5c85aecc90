from django.urls import path

from . import views

app_name = "monitoring"

urlpatterns = [
    path("", views.index, name="index"),
    path("system/", views.system, name="system"),
    path("rules/", views.rule_create, name="rule-create"),
    path("rules/<int:pk>/", views.rule_update, name="rule-update"),
    path("rules/<int:pk>/toggle/", views.rule_toggle, name="rule-toggle"),
]
