from django.urls import path

from . import views

app_name = "pipelines"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/", views.detail, name="detail"),
    path("runs/<int:pk>/", views.run_detail, name="run-detail"),
    path("runs/<int:pk>/row/", views.run_row, name="run-row"),
]
