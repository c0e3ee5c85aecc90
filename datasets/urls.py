from django.urls import path

from . import views

app_name = "datasets"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.detail, name="detail"),
    path("<int:pk>/row/", views.row, name="row"),
    path("jobs/<int:pk>/row/", views.job_row, name="job-row"),
]
