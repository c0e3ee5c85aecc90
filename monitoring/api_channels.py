"""REST API of notification channels: where alerts are sent (apprise URLs), and their test sends.

The URL is write-only: reads show `url_masked` and `service`. Errors (`last_error`, a delivery's
`error`) never hold the URL's secrets.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from mlops_dashboard import permissions
from mlops_dashboard.filters import ProjectScopedMixin

from . import notify
from .models import Delivery, NotificationChannel, Priority
from .services import channels as channel_services


class ChannelConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A channel with this name already exists."
    default_code = "conflict"


class NotificationChannelSerializer(serializers.Serializer):
    """A plain serializer: the service checks names per scope (409), not DRF's unique validators."""

    id = serializers.IntegerField(read_only=True)
    project = serializers.IntegerField(
        source="project_id", min_value=1, max_value=10**18 - 1, allow_null=True, required=False, default=None,
        help_text="The project whose channel this is (its maintainers manage it); null or absent: a global "
                  "channel (staff only). Fixed once created.")
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(
        write_only=True, max_length=notify.URL_MAX_LENGTH, trim_whitespace=True,
        help_text="An apprise URL (mailto://, mailtos://, slack://, msteams://, discord://, ntfy://, json://, "
                  "jsons://, ...). Write-only: never shown again; a PATCH without it keeps it.")
    service = serializers.CharField(read_only=True, help_text="The kind of service, from the URL.")
    url_masked = serializers.CharField(read_only=True, help_text="Scheme and host, secrets as ***.")
    min_priority = serializers.ChoiceField(Priority.values, default=Priority.LOW,
                                           help_text="Alerts below this priority are not sent here.")
    enabled = serializers.BooleanField(default=True)
    default_route = serializers.BooleanField(
        default=True, help_text="Receives the alerts of every rule that names no channel.")
    consecutive_failures = serializers.IntegerField(read_only=True)
    last_error = serializers.CharField(read_only=True, help_text="The last failure's error, without secrets.")
    last_sent_at = serializers.DateTimeField(read_only=True)
    last_failed_at = serializers.DateTimeField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def validate_project(self, value):
        if self.instance is not None and value != self.instance.project_id:
            raise serializers.ValidationError("A channel's project cannot change; create one in the other project.")
        return value

    def create(self, validated_data):
        return channel_services.channel_create(user=self.context["request"].user,
                                               project=validated_data.pop("project_id", None), **validated_data)

    def update(self, instance, validated_data):
        validated_data.pop("project_id", None)
        return channel_services.channel_update(user=self.context["request"].user, channel=instance, **validated_data)


class ChannelTestDeliverySerializer(serializers.ModelSerializer):
    kind = serializers.CharField(source="notification.kind", read_only=True)

    class Meta:
        model = Delivery
        fields = ["id", "notification", "kind", "channel", "channel_name", "status", "attempts", "error", "created_at",
                  "last_attempt_at", "sent_at"]
        read_only_fields = fields


class NotificationChannelViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                                 mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin,
                                 viewsets.GenericViewSet):
    """Notification channels: the global ones (`project` null: every user lists them, masked; staff
    manage them) and those of the user's projects (members read, maintainers manage). `?project=<id>`
    lists that project's channels only. POST `{"name", "url", "min_priority", "enabled",
    "default_route", "project"}` → 201; PATCH changes some fields (without `url` the URL is kept);
    DELETE → 204. An invalid URL is a 400 naming `url`; a name already used in the same scope a 409;
    a channel the user may not manage a 403 naming the role (admin for global channels, maintainer for
    a project's); another project's a 404. `test/` queues a test message: 202 with its delivery."""

    serializer_class = NotificationChannelSerializer
    include_global = True
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return self.scoped(NotificationChannel.objects.all())

    def perform_create(self, serializer):
        try:
            serializer.save()
        except channel_services.ChannelConflict as exc:
            raise ChannelConflict(str(exc)) from None

    def perform_update(self, serializer):
        self.perform_create(serializer)

    def update(self, request, *args, **kwargs):
        # Permission before validation: someone who may not change it learns nothing from a 400.
        channel_services.channel_authorize(request.user, self.get_object())
        return super().update(request, *args, **kwargs)

    def perform_destroy(self, instance):
        channel_services.channel_delete(user=self.request.user, channel=instance)

    @extend_schema(request=None, responses={202: ChannelTestDeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        channel = permissions.get_visible(NotificationChannel.objects.all(), request.user, pk=pk)
        delivery = channel_services.channel_test(user=request.user, channel=channel)
        return Response(ChannelTestDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
