from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.views import ObtainAuthToken

from monitoring import views as monitoring_views

from . import api, throttles, views
from .routers import ApiRouter

router = ApiRouter()
router.register("activity", api.ActivityViewSet, basename="activity")

api_urlpatterns = [
    # DRF's view turns throttles off; an anonymous caller guessing passwords is what they are for.
    path("auth/token/", ObtainAuthToken.as_view(throttle_classes=[throttles.AnonThrottle, throttles.UserThrottle]),
         name="api-token"),
    path("events/", api.EventLogView.as_view(), name="api-events"),
    path("events/test/", api.TestEventView.as_view(), name="api-events-test"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's init script as a request of its own: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
         name="api-docs"),
    *router.urls,
]

urlpatterns = [
    path("", monitoring_views.dashboard, name="dashboard"),
    path("live/", views.live_events, name="live-events"),
    path("activity/", views.activity_feed, name="activity-feed"),
    path("health/", views.health, name="health"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/", include(api_urlpatterns)),
    # Each app's REST endpoints (DRF routers) live in its own api_urls.py.
    path("api/", include("datasets.api_urls")),
    path("api/", include("training.api_urls")),
    path("api/", include("pipelines.api_urls")),
    path("api/", include("monitoring.api_urls")),
    path("datasets/", include("datasets.urls")),
    path("training/", include("training.urls")),
    path("pipelines/", include("pipelines.urls")),
    path("monitoring/", include("monitoring.urls")),
]
