from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from monitoring import views as monitoring_views
from monitoring import views_account as monitoring_account

from . import account, api, audit_api, project_views, projects_api, tokens_api, views
from .routers import ApiRouter

router = ApiRouter()
router.register("activity", api.ActivityViewSet, basename="activity")
router.register("auth/tokens", tokens_api.ApiTokenViewSet, basename="api-tokens")
router.register("audit", audit_api.AuditEntryViewSet, basename="audit")
router.register("projects", projects_api.ProjectViewSet, basename="projects")
router.register(projects_api.MEMBERS_PREFIX, projects_api.MemberViewSet, basename="project-members")

api_urlpatterns = [
    path("auth/token/", tokens_api.TokenLoginView.as_view(), name="api-token"),
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
    path("projects/", project_views.project_list, name="projects"),
    path("projects/switch/", project_views.project_switch, name="project-switch"),
    path("projects/switcher/", project_views.project_switcher, name="project-switcher"),
    path("projects/<slug:slug>/members/", project_views.members, name="project-members"),
    path("projects/<slug:slug>/members/add/", project_views.member_add, name="project-member-add"),
    re_path(rf"^projects/(?P<slug>[-\w]+)/members/(?P<username>{projects_api.USERNAME_REGEX})/role/$",
            project_views.member_change, name="project-member-change"),
    re_path(rf"^projects/(?P<slug>[-\w]+)/members/(?P<username>{projects_api.USERNAME_REGEX})/remove/$",
            project_views.member_remove, name="project-member-remove"),
    path("account/tokens/", account.api_tokens, name="account-tokens"),
    path("account/tokens/<int:token_id>/revoke/", account.api_token_revoke_view, name="account-token-revoke"),
    path("account/password/", account.PasswordChangeView.as_view(), name="account-password"),
    path("account/notifications/", monitoring_account.account_notifications, name="account-notifications"),
    path("admin/", admin.site.urls),
    # The audit log's pages: projects/<slug>/audit/ (and .csv), audit/ (staff).
    path("", include("mlops_dashboard.audit_urls")),
    path("api/", include(api_urlpatterns)),
    # Each app's REST endpoints (DRF routers) live in its own api_urls.py.
    path("api/", include("datasets.api_urls")),
    path("api/", include("training.api_urls")),
    path("api/", include("pipelines.api_urls")),
    path("api/", include("monitoring.api_urls")),
    path("api/", include("telemetry.api_urls")),
    path("datasets/", include("datasets.urls")),
    path("training/", include("training.urls")),
    path("pipelines/", include("pipelines.urls")),
    path("monitoring/", include("monitoring.urls")),
    path("telemetry/", include("telemetry.urls")),
]
