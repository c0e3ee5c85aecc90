from django.urls import path

from . import views

app_name = "training"

urlpatterns = [
    path("", views.index, name="index"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/row/", views.job_row, name="job-row"),
    path("models/", views.models_index, name="models"),
    path("models/<int:pk>/group/", views.model_group, name="model-group"),
]
