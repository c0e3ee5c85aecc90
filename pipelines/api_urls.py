from rest_framework.routers import SimpleRouter

from . import api

router = SimpleRouter(trailing_slash=True)
router.register("pipelines", api.PipelineViewSet, basename="pipeline")
router.register("pipeline-runs", api.PipelineRunViewSet, basename="pipeline-run")

urlpatterns = router.urls
