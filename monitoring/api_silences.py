"""REST API of silences, snoozes and maintenance windows (monitoring/services/silences.py).

Who may: staff for global ones (no `project` matcher, and a `rule` matcher naming no project's
rule), a project's maintainers for their project's (403 naming the role otherwise; 404 when the
project is invisible). A project's silence always carries its `project` matcher."""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_dashboard import permissions
from mlops_dashboard.filters import ProjectFilters, ProjectScopedMixin

from . import silencing
from .models import Alert, MaintenanceWindow, Silence
from .services import silences as silence_services

MATCHERS_HELP = ("All must hold: `rule` (an alert's `rule`), `priority` (that priority or below), `subject` "
                 "(a shell-style glob over the alert's subject), `project` (an id). At least one.")
DENIED = {403: OpenApiResponse(description="Staff for global ones, the project's maintainers for a project's "
                                           "(the detail names the role)."),
          404: OpenApiResponse(description="The project (or the object) is not visible to the caller.")}


class SilenceConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The silence has already ended."
    default_code = "conflict"


class SilenceSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True, allow_null=True,
                                       help_text="Whose it is: that project's maintainers'; null: staff's (global).")
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    state = serializers.ChoiceField(["active", "pending", "expired"], read_only=True)
    matchers = serializers.JSONField(read_only=True, help_text=MATCHERS_HELP)

    class Meta:
        model = Silence
        fields = ["id", "kind", "matchers", "project", "starts_at", "ends_at", "comment", "created_by", "created_at",
                  "state"]
        read_only_fields = fields


class SilenceCreateSerializer(serializers.Serializer):
    matchers = serializers.JSONField(help_text=MATCHERS_HELP)
    starts_at = serializers.DateTimeField(required=False, allow_null=True,
                                          help_text="Default now; a time in the past counts as now.")
    ends_at = serializers.DateTimeField(help_text=f"After the start, at most {silence_services.SILENCE_MAX_DAYS} "
                                                  "days later.")
    comment = serializers.CharField(max_length=silence_services.COMMENT_MAX, required=False, allow_blank=True,
                                    default="")


class SilenceFilters(ProjectFilters):
    state = serializers.ChoiceField(["active", "pending", "expired"], required=False)


@extend_schema_view(
    create=extend_schema(request=SilenceCreateSerializer, responses={201: SilenceSerializer, **DENIED}),
    destroy=extend_schema(responses={204: OpenApiResponse(description="Ended now; the row is kept, expired."),
                                     409: OpenApiResponse(description="It has already ended."), **DENIED}),
)
class SilenceViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Silences and snoozes, newest first: the global ones and those of the user's projects.
    `?state=active|pending|expired`, `?project=<id>`. POST makes one (201); DELETE ends it now and
    keeps the row, expired (204; 409 when it has already ended)."""

    serializer_class = SilenceSerializer
    filters_class = SilenceFilters
    include_global = True

    def get_queryset(self):
        state = self.filters().get("state")
        return self.scoped(silence_services.silences_visible(user=self.request.user, state=state))

    def create(self, request, *args, **kwargs):
        body = SilenceCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        silence = silence_services.silence_create(user=request.user, **body.validated_data)
        return Response(SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        silence = self.get_object()
        try:
            silence_services.silence_expire(user=request.user, silence=silence)
        except silence_services.Conflict as exc:
            raise SilenceConflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class SnoozeSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(min_value=1, max_value=silence_services.SNOOZE_MAX_MINUTES,
                                       help_text="How long: 1 minute to 7 days (10080).")


class AlertSnoozeView(APIView):
    """Snooze one alert: a silence (kind `snooze`) of its rule, subject and project alone, for
    `minutes` (at most 7 days). The same rights as silencing its rule: staff for a system alert,
    the project's maintainers for a project's. 409 when the alert is resolved."""

    @extend_schema(request=SnoozeSerializer, responses={
        201: SilenceSerializer, **DENIED, 409: OpenApiResponse(description="The alert is resolved.")})
    def post(self, request, pk: int):
        alert = permissions.get_visible(Alert.objects.select_related("rule"), request.user, pk=pk)
        permissions.authorize(request.user, "manage", Silence(project_id=alert.project_id))  # before the body
        body = SnoozeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            silence = silence_services.alert_snooze(user=request.user, alert=alert, minutes=body.validated_data["minutes"])
        except silence_services.Conflict as exc:
            raise SilenceConflict(str(exc)) from None
        return Response(SilenceSerializer(silence).data, status=status.HTTP_201_CREATED)


class MaintenanceWindowSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    matchers = serializers.JSONField(help_text=MATCHERS_HELP)
    cron = serializers.CharField(max_length=100, help_text="minute hour day-of-month month day-of-week, in UTC: "
                                                           "\"0 2 * * 6\" is Saturdays at 02:00.")
    duration_minutes = serializers.IntegerField(min_value=1, max_value=silence_services.MAINTENANCE_MAX_MINUTES)
    comment = serializers.CharField(max_length=silence_services.COMMENT_MAX, required=False, allow_blank=True)
    active_until = serializers.SerializerMethodField(help_text="When the window that holds now ends; null when "
                                                               "none holds (or it is disabled).")

    class Meta:
        model = MaintenanceWindow
        fields = ["id", "matchers", "project", "cron", "duration_minutes", "comment", "enabled", "active_until",
                  "created_by", "created_at"]
        read_only_fields = ["id", "project", "active_until", "created_by", "created_at"]

    def get_active_until(self, window) -> str | None:
        if not window.enabled:
            return None
        until = silencing.window_active(window.cron, window.duration_minutes, timezone.now())
        return until.isoformat() if until else None

    def create(self, validated_data):
        return silence_services.maintenance_window_create(user=self.context["request"].user, **validated_data)

    def update(self, instance, validated_data):
        return silence_services.maintenance_window_update(user=self.context["request"].user, window=instance,
                                                          **validated_data)


@extend_schema_view(
    create=extend_schema(responses={201: MaintenanceWindowSerializer, **DENIED}),
    partial_update=extend_schema(responses={200: MaintenanceWindowSerializer, **DENIED}),
    destroy=extend_schema(responses={204: OpenApiResponse(description="Deleted."), **DENIED}),
)
class MaintenanceWindowViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                               mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin,
                               viewsets.GenericViewSet):
    """Maintenance windows: recurring silences, from each time `cron` fires (UTC) for
    `duration_minutes` (1..10080). The same owners as silences. `active_until` says when the window
    holding now ends. PATCH changes any field; DELETE removes it."""

    serializer_class = MaintenanceWindowSerializer
    include_global = True
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return self.scoped(MaintenanceWindow.objects.select_related("created_by", "project"))

    def perform_destroy(self, instance):
        silence_services.maintenance_window_delete(user=self.request.user, window=instance)
