from rest_framework.routers import SimpleRouter

from .api import DatasetViewSet, ProcessingJobViewSet

router = SimpleRouter(trailing_slash=True)
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("processing-jobs", ProcessingJobViewSet, basename="processing-job")

urlpatterns = router.urls
