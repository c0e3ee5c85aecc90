from django.urls import path
from mlops_dashboard.routers import ApiRouter

from . import api

router = ApiRouter()
router.register("training-jobs", api.TrainingJobViewSet, basename="training-job")
router.register("models", api.ModelVersionViewSet, basename="model-version")
router.register("deployments", api.DeploymentViewSet, basename="deployment")

urlpatterns = [
    path("models/by-name/<str:name>/predict/", api.PredictByNameView.as_view(), name="model-predict-by-name"),
    path("models/<int:pk>/predict/", api.ModelVersionPredictView.as_view(), name="model-version-predict"),
    path("projects/<slug:slug>/models/<str:name>/predict/", api.ProjectModelPredictView.as_view(),
         name="project-model-predict"),
    *router.urls,
]
