from django.urls import path
from mlops_dashboard.routers import ApiRouter

from . import api

router = ApiRouter()
router.register("training-jobs", api.TrainingJobViewSet, basename="training-job")
router.register("models", api.ModelVersionViewSet, basename="model-version")
router.register("deployments", api.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("models/by-name/<str:name>/predict/", api.PredictByNameView.as_view(), name="model-predict-by-name"),
    *router.urls,
]
