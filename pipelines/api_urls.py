from mlops_dashboard.routers import ApiRouter

from . import api

router = ApiRouter()
router.register("pipelines", api.PipelineViewSet, basename="pipeline")
router.register("pipeline-runs", api.PipelineRunViewSet, basename="pipeline-run")

urlpatterns = router.urls
