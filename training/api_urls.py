from django.urls import path
from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=True)
router.register("training-jobs", api.TrainingJobViewSet, basename="training-job")
router.register("models", api.ModelVersionViewSet, basename="model-version")
router.register("deployments", api.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("models/by-name/<str:name>/predict/", api.PredictByNameView.as_view(), name="model-predict-by-name"),
    *router.urls,
]
