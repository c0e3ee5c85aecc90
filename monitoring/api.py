"""REST API of the monitoring app: the polling fallback of its events, alerts and rules, anomalies,
on-demand anomaly detection, and the activity feed."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import Http404
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as dataset_selectors
from mlops_dashboard import permissions
from mlops_dashboard.api_errors import problem_response
from mlops_dashboard.filters import IdField, ProjectFilters, ProjectScopedMixin, QuerySerializer
from telemetry import selectors as telemetry_selectors

from . import payloads, selectors, services
from .models import METRICS, Alert, AlertRule, Anomaly, AnomalyDetection, Delivery, Priority


class ConflictError(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this."
    default_code = "conflict"


# --- the polling fallback of system_metrics / health_change / service_health ---------------------


class MetricsQuery(QuerySerializer):
    minutes = serializers.IntegerField(min_value=1, max_value=60 * 24 * 30, default=60)
    host = serializers.CharField(max_length=100, required=False, allow_blank=True)


class SystemView(APIView):
    """Latest metrics and health per host (each host's last `system_metrics` payload, `stale` when
    it has not reported for three intervals) and the system's health (as `health_change` says it)."""

    @extend_schema(responses=inline_serializer("MonitoringSystem", {
        "health": serializers.DictField(), "hosts": serializers.ListField(child=serializers.DictField()),
        "active_connections": serializers.IntegerField(), "generated_at": serializers.DateTimeField()}))
    def get(self, request):
        return Response(selectors.system_snapshot())


class MetricsView(APIView):
    """Chart series of the last `minutes` (default 60), per host, oldest first; `t` in ms since the epoch.
    Raw samples within the raw retention, per-minute averages beyond."""

    @extend_schema(parameters=[MetricsQuery],
                   responses=inline_serializer("MetricSeries", {"resolution": serializers.CharField(),
                                                                 "minutes": serializers.IntegerField(),
                                                                 "hosts": serializers.DictField()}))
    def get(self, request):
        query = MetricsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        return Response(selectors.metric_series(minutes=query.validated_data["minutes"],
                                                host=query.validated_data.get("host") or None))


class ServicesView(APIView):
    """The last check of every component (`service_health`'s services, `integration_status`'s
    integrations) and the Celery workers with their queues and active tasks."""

    @extend_schema(responses=inline_serializer("ServiceChecks", {
        "services": serializers.ListField(child=serializers.DictField()),
        "integrations": serializers.ListField(child=serializers.DictField()),
        "workers": serializers.ListField(child=serializers.DictField()),
        "checked_at": serializers.CharField()}))
    def get(self, request):
        return Response(selectors.services_latest())


# --- alerts and rules ---------------------------------------------------------------------------------


class AlertSerializer(serializers.ModelSerializer):
    """The same object `system_alert` carries in `alert`."""

    def to_representation(self, instance):
        return payloads.alert_payload(instance)

    class Meta:
        model = Alert
        fields = ["id"]


class DeliverySerializer(serializers.ModelSerializer):
    """One send of one notification about the alert to one channel (its error without secrets)."""

    channel_id = serializers.IntegerField(read_only=True, allow_null=True)
    kind = serializers.CharField(source="notification.kind", read_only=True,
                                 help_text="firing, repeat, resolved or personal.")

    class Meta:
        model = Delivery
        fields = ["id", "channel_id", "channel_name", "status", "attempts", "error", "last_attempt_at", "sent_at",
                  "kind"]
        read_only_fields = fields


class ResolveSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class AlertFilters(ProjectFilters):
    status = serializers.ChoiceField([*Alert.Status.values, "unresolved"], required=False)
    priority = serializers.ChoiceField(Priority.values, required=False)
    silenced = serializers.BooleanField(required=False, help_text="true: only alerts a silence, snooze or "
                                                                 "maintenance window holds back now; false: the others.")


class AlertViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Alerts, newest first: the system's (global, `project` null) and those of the user's projects
    (a job's alert belongs to the job's project; another project's answers 404). Filters: `status`
    (open, acknowledged, resolved, unresolved), `priority`, `silenced`, `project` (that project's alerts only,
    without the system's). Acknowledge and resolve with POST: a project's alert needs its editor
    role, a system alert staff (403 naming the role); 409 when the alert's status does not allow it."""

    serializer_class = AlertSerializer
    filters_class = AlertFilters
    include_global = True

    def get_queryset(self):
        filters = self.filters()
        return self.scoped(selectors.alerts(status=filters.get("status"), priority=filters.get("priority"),
                                            silenced=filters.get("silenced"), limit=0))

    def _alert(self, pk) -> Alert:
        return permissions.get_visible(Alert.objects.select_related("project"), self.request.user, pk=pk)

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        alert = self._alert(pk)
        try:
            alert = services.alert_acknowledge(alert=alert, user=request.user)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(payloads.alert_payload(alert))

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The deliveries of every notification about the alert, newest first (at most 50)."""
        return Response(DeliverySerializer(services.alert_deliveries(self._alert(pk)), many=True).data)

    @extend_schema(request=ResolveSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        alert = self._alert(pk)
        body = ResolveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            alert = services.alert_resolve(alert=alert, user=request.user, note=body.validated_data["note"])
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(payloads.alert_payload(alert))


class ChannelIdsField(serializers.ListField):
    """A rule's channels: written as ids (the service checks each is in the rule's scope), read as ids."""

    def to_representation(self, data):
        return [c.pk for c in data.all()] if hasattr(data, "all") else list(data)


class AlertRuleSerializer(serializers.ModelSerializer):
    condition = serializers.CharField(read_only=True)
    project = serializers.IntegerField(
        source="project_id", min_value=1, allow_null=True, required=False,
        help_text="The project whose rule this is (its maintainers manage it); null or absent: a global "
                  "rule (staff only). Fixed once created.")
    metric = serializers.ChoiceField(choices=[("", "—")] + [(k, v[0]) for k, v in METRICS.items()],
                                     required=False, allow_blank=True)
    suggested_actions = serializers.ListField(child=serializers.CharField(max_length=500), required=False,
                                              max_length=10)
    channels = ChannelIdsField(
        child=serializers.IntegerField(min_value=1), required=False, max_length=services.MAX_RULE_CHANNELS,
        help_text="Ids of the notification channels its alerts go to: a project's rule may name its project's "
                  "channels and the global ones, a global rule the global ones only. Empty: every enabled "
                  "channel whose default_route is true.")
    channel_names = serializers.SerializerMethodField()

    class Meta:
        model = AlertRule
        fields = ["id", "slug", "project", "name", "kind", "metric", "comparison", "threshold", "duration_seconds",
                  "priority", "enabled", "description", "suggested_actions", "channels", "channel_names",
                  "repeat_interval_minutes", "condition", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at", "condition"]
        extra_kwargs = {"slug": {"required": False, "validators": []}}

    def get_channel_names(self, instance) -> list[str]:
        return [c.name for c in instance.channels.all()]

    def validate_slug(self, value):
        if self.instance is not None and value and value != self.instance.slug:
            raise serializers.ValidationError("A rule's slug cannot change: its alerts are keyed by it.")
        return value

    def validate_project(self, value):
        if self.instance is not None and value != self.instance.project_id:
            raise serializers.ValidationError("A rule's project cannot change; create a rule in the other project.")
        return value

    def create(self, validated_data):
        project = validated_data.pop("project_id", None)
        return services.alert_rule_create(user=self.context["request"].user, project=project, **validated_data)

    def update(self, instance, validated_data):
        validated_data.pop("slug", None)
        validated_data.pop("project_id", None)
        return services.alert_rule_update(rule=instance, user=self.context["request"].user, **validated_data)


class AlertRuleViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                       mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Alert rules: the global ones (`project` null: every user reads them, staff change them) and
    those of the user's projects (members read, maintainers manage). `?project=<id>` lists that
    project's rules only (without the global ones). POST without `project` makes a global rule
    (staff only); PATCH `{"enabled": false}` disables one and resolves its open alerts; DELETE
    resolves them too. Invalid combinations answer 400 naming the field; a rule the user may not
    change answers 403 naming the role (admin for global rules, maintainer for a project's)."""

    serializer_class = AlertRuleSerializer
    include_global = True

    def get_queryset(self):
        return self.scoped(AlertRule.objects.prefetch_related("channels"))

    def perform_destroy(self, instance):
        services.alert_rule_delete(rule=instance, user=self.request.user)


# --- anomalies and detection -------------------------------------------------------------------------


class AnomalySerializer(serializers.ModelSerializer):
    class Meta:
        model = Anomaly
        fields = ["id", "project", "source", "entity", "metric", "value", "score", "severity", "baseline", "details",
                  "detection", "alert", "detected_at", "telemetry_source", "observed_at"]
        read_only_fields = fields


class AnomalyFilters(ProjectFilters):
    source = serializers.ChoiceField(Anomaly.Source.values, required=False)
    entity = serializers.CharField(max_length=200, required=False, help_text="The host, or the dataset's name.")
    severity = serializers.ChoiceField(Anomaly.Severity.values, required=False)


class AnomalyViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Recorded anomalies, newest first: metric anomalies (global, `project` null) and those of the
    datasets of the user's projects. Filters: `source` (metrics, dataset), `entity`, `severity`,
    `project` (that project's only)."""

    serializer_class = AnomalySerializer
    filters_class = AnomalyFilters
    include_global = True

    def get_queryset(self):
        filters = {k: v for k, v in self.filters().items() if k != "project"}
        return self.scoped(Anomaly.objects.filter(**filters))


class DetectionSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True)
    dataset_id = serializers.IntegerField(read_only=True, allow_null=True, help_text="Null for a telemetry detection.")
    source_id = serializers.IntegerField(read_only=True, allow_null=True,
                                         help_text="The telemetry source; null for a dataset detection.")

    class Meta:
        model = AnomalyDetection
        fields = ["id", "project", "dataset_id", "dataset_name", "source_id", "source_name", "metrics", "start", "end",
                  "use_baseline", "baseline_start", "baseline_end", "rows_range", "rows_baseline", "contamination",
                  "columns", "columns_used", "status", "progress", "error", "n_rows", "n_flagged", "share_flagged",
                  "max_score", "threshold", "top_rows", "created_at", "started_at", "finished_at", "duration"]
        read_only_fields = fields


EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


@extend_schema_field({"oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}],
                      "description": "ISO 8601 (UTC when it has no offset) or epoch milliseconds."})
class InstantField(serializers.Field):
    """A moment: ISO 8601 (UTC when it names no offset) or milliseconds since the epoch."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            raise serializers.ValidationError("Expected ISO 8601 or epoch milliseconds.")
        moment = None
        if isinstance(data, (int, float)) or (isinstance(data, str) and data.strip().isdigit()):
            try:
                moment = datetime.fromtimestamp(float(data) / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                moment = None
        elif isinstance(data, str):
            try:
                moment = parse_datetime(data.strip()) if len(data) <= 64 else None
            except ValueError:  # well formed, but no such date
                moment = None
            if moment is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        if moment is None:
            raise serializers.ValidationError("Expected ISO 8601 (2026-12-02T10:00:00Z) or epoch milliseconds.")
        if not EARLIEST <= moment < LATEST:
            raise serializers.ValidationError("Out of range (1970 to 2200).")
        return moment

    def to_representation(self, value):
        return value.isoformat() if value else None


TELEMETRY_FIELDS = ("source", "metrics", "start", "end", "use_baseline", "baseline_start", "baseline_end")


class DetectionRequestSerializer(serializers.Serializer):
    dataset = serializers.IntegerField(min_value=1, required=False, help_text="A ready dataset (or give `source`).")
    source = serializers.CharField(max_length=100, required=False,
                                   help_text="A telemetry source, by name or id (or give `dataset`).")
    project = IdField(help_text="The dataset's or source's project (set by it; another one is a 400). With "
                                "`source`, it also tells apart sources of the same name in two projects.")
    contamination = serializers.FloatField(default=0.05)
    columns = serializers.ListField(child=serializers.CharField(max_length=255), required=False, allow_empty=True,
                                    max_length=500, help_text="Dataset: the columns to score (default: every numeric one).")
    metrics = serializers.ListField(child=serializers.CharField(max_length=100), required=False, allow_empty=True,
                                    max_length=100, help_text="Telemetry: the metrics scored together (default: all "
                                                              "of the source's).")
    start = InstantField(required=False, help_text="Telemetry: the range's start (required with `source`).")
    end = InstantField(required=False, help_text="Telemetry: the range's end, after `start`, at most 31 days later.")
    use_baseline = serializers.BooleanField(default=True, help_text="Telemetry: fit on a baseline period (true) "
                                                                    "or on the range itself.")
    baseline_start = InstantField(required=False, help_text="Telemetry: default 7 days before `baseline_end`.")
    baseline_end = InstantField(required=False, help_text="Telemetry: default `start`.")

    def validate_contamination(self, value):
        if not 0.0 < value <= 0.5:
            raise serializers.ValidationError("The expected share of anomalies must be in (0, 0.5].")
        return value

    def validate_dataset(self, value):
        dataset = dataset_selectors.dataset_get(value)
        # Another project's dataset is as unknown as a missing one (its existence does not leak).
        if dataset is None or not permissions.can_see(self.context["request"].user, dataset):
            raise serializers.ValidationError(f"No dataset with id {value}.")
        return dataset

    def validate(self, attrs):
        given = set(getattr(self, "initial_data", {}) or {})
        if ("dataset" in attrs) == ("source" in attrs):
            why = "Give either `dataset` or `source` (a telemetry source), not both and not neither."
            raise serializers.ValidationError({"dataset": why, "source": why})
        if "dataset" in attrs:
            extra = [name for name in TELEMETRY_FIELDS if name in given]
            if extra:
                raise serializers.ValidationError({extra[0]: "Read only with `source` (a telemetry detection)."})
            return attrs
        if "columns" in given:
            raise serializers.ValidationError({"columns": "Read only with `dataset`; a telemetry detection takes "
                                                          "`metrics`."})
        missing = [name for name in ("start", "end") if name not in attrs]
        if missing:
            raise serializers.ValidationError({name: "Required with `source`." for name in missing})
        # An unknown source (or another project's) answers 404, like an unknown object in the path.
        attrs["source"] = telemetry_selectors.source_get(self.context["request"].user, attrs["source"],
                                                         project=attrs.get("project"))
        return attrs


class DetectionFilters(ProjectFilters):
    dataset = IdField(help_text="Only detections on this dataset.")
    source = IdField(help_text="Only detections on this telemetry source (by id).")


class ScoresQuery(QuerySerializer):
    offset = serializers.IntegerField(min_value=0, default=0)
    limit = serializers.IntegerField(min_value=1, max_value=100_000, default=10_000)


class DetectionViewSet(ProjectScopedMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                       mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """IsolationForest in a worker, over a ready dataset or a telemetry source's time range. POST
    {dataset, contamination (0, 0.5], columns?} or {source (name or id), metrics?, start, end,
    contamination, use_baseline (default true), baseline_start?, baseline_end?} (never both; the
    editor role in the target's project) answers 202 with the queued detection; it belongs to the
    target's project. A telemetry detection aligns the metrics on the source's interval and needs
    50 aligned rows in the range and 100 in the baseline (default: the 7 days before `start`), else
    400 saying how many there are. `anomaly_detected` announces the result (a telemetry detection:
    each of its first 50 flagged readings, then `anomaly_detection_completed`), and GET shows it with the 50
    most anomalous rows. `scores/` pages through every row's score. `cancel/` stops a queued or
    running one, DELETE removes a finished one: its creator (editor) or a maintainer."""

    serializer_class = DetectionSerializer
    filters_class = DetectionFilters

    def get_queryset(self):
        filters = self.filters()
        rows = AnomalyDetection.objects.select_related("project")
        if filters.get("dataset"):
            rows = rows.filter(dataset_id=filters["dataset"])
        if filters.get("source"):
            rows = rows.filter(source_id=filters["source"])
        return self.scoped(rows)

    @extend_schema(request=DetectionRequestSerializer, responses={202: DetectionSerializer})
    def create(self, request, *args, **kwargs):
        body = DetectionRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "source" in data:
            detection = services.telemetry_detection_start(
                source=data["source"], metrics=data.get("metrics") or None, start=data["start"], end=data["end"],
                contamination=data["contamination"], use_baseline=data["use_baseline"],
                baseline_start=data.get("baseline_start"), baseline_end=data.get("baseline_end"),
                user=request.user, project=data.get("project"))
            return Response(DetectionSerializer(detection).data, status=status.HTTP_202_ACCEPTED)
        detection = services.anomaly_detection_start(dataset=data["dataset"], contamination=data["contamination"],
                                                     columns=data.get("columns") or None, user=request.user,
                                                     project=data.get("project"))
        return Response(DetectionSerializer(detection).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=DetectionSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        detection = self.get_object()
        try:
            detection = services.anomaly_detection_cancel(detection=detection, user=request.user)
        except services.DetectionConflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(DetectionSerializer(detection).data)

    def perform_destroy(self, instance):
        try:
            services.anomaly_detection_delete(detection=instance, user=self.request.user)
        except services.DetectionConflict as exc:
            raise ConflictError(str(exc)) from None

    @extend_schema(parameters=[ScoresQuery],
                   responses=inline_serializer("DetectionScores", {
                       "count": serializers.IntegerField(), "offset": serializers.IntegerField(),
                       "scores": serializers.ListField(child=serializers.FloatField()),
                       "threshold": serializers.FloatField()}))
    @action(detail=True, methods=["get"])
    def scores(self, request, pk=None):
        detection = self.get_object()
        query = ScoresQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        scores = services.anomaly_detection_scores(detection=detection)
        if scores is None:
            raise ConflictError(f"The detection is {detection.status}; scores exist once it has succeeded.")
        offset, limit = query.validated_data["offset"], query.validated_data["limit"]
        page = scores[offset: offset + limit]
        return Response({"count": int(scores.shape[0]), "offset": offset, "threshold": detection.threshold,
                         "scores": [round(float(s), 5) for s in page]})


class DatasetAnomaliesView(APIView):
    """The latest anomaly detection of a dataset (running or finished) with its most anomalous rows."""

    @extend_schema(responses=DetectionSerializer)
    def get(self, request, dataset_id: int):
        dataset = dataset_selectors.dataset_get(dataset_id)
        if dataset is None or not permissions.can_see(request.user, dataset):
            raise Http404("No Dataset matches the given query.")  # as get_object_or_404 says it
        detection = selectors.dataset_anomaly_detection_latest(dataset=dataset)
        if detection is None:
            return problem_response(404, f"No anomaly detection has run on {dataset.name} yet.")
        return Response(DetectionSerializer(detection).data)


# --- the personal route ----------------------------------------------------------------------------


class PersonalNotificationsSerializer(serializers.Serializer):
    my_jobs_failed = serializers.BooleanField(help_text="Email me when a job I started fails.")
    email = serializers.EmailField(read_only=True, allow_null=True,
                                   help_text="Where it goes: the account's address; null: the account has none.")
    channel = serializers.CharField(read_only=True, allow_null=True,
                                    help_text="The global email channel it goes through; null: none exists, "
                                              "nothing can be sent.")


class PersonalNotificationsView(APIView):
    """The caller's own personal route: "notify me when my jobs fail" (processing, training, pipeline
    runs, anomaly detections), by email to the account's address through the first enabled global email channel."""

    @extend_schema(responses=PersonalNotificationsSerializer)
    def get(self, request):
        return Response(services.preference_get(request.user))

    @extend_schema(request=PersonalNotificationsSerializer, responses=PersonalNotificationsSerializer)
    def put(self, request):
        body = PersonalNotificationsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(services.preference_set(user=request.user, my_jobs_failed=body.validated_data["my_jobs_failed"]))
