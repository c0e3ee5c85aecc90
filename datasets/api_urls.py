from mlops_dashboard.routers import ApiRouter

from .api import DatasetViewSet, ProcessingJobViewSet

router = ApiRouter()
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("processing-jobs", ProcessingJobViewSet, basename="processing-job")

urlpatterns = router.urls
