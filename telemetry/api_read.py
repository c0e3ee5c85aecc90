"""Reading telemetry back: the sources of the user's projects (with the registry: unit, description,
labels, expected interval), a source's series over a time range, and the registry's edits.

Every read goes through `selectors` (what the user may see); every write through `services`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_dashboard.filters import IdField, ProjectScopedMixin, QuerySerializer

from . import selectors, services
from .models import NAME_PATTERN, Metric, Source, Status

# Times a query string may name: epoch milliseconds or ISO 8601, within these years (a wider range
# is no series of this product, and stays clear of datetime's limits when defaults are derived).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


@extend_schema_field({"type": "string", "description": "ISO 8601 (UTC when no offset) or epoch milliseconds.",
                      "example": "2026-12-02T10:00:00Z"})
class MomentField(serializers.Field):
    """A time: ISO 8601 (UTC when it has no offset) or epoch milliseconds."""

    default_error_messages = {
        "invalid": "An ISO 8601 time (2026-12-02T10:00:00Z) or epoch milliseconds.",
        "range": "Between 1970 and 3000.",
    }

    def to_internal_value(self, data):
        text = str(data).strip()
        moment = None
        if text.lstrip("-").isdigit() and len(text) <= 16:
            try:
                moment = datetime.fromtimestamp(int(text) / 1000, tz=UTC)
            except (OverflowError, OSError, ValueError):
                self.fail("range")
        else:
            try:
                moment = parse_datetime(text)
            except ValueError:
                moment = None
            if moment is None:
                self.fail("invalid")
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=UTC)
        if not EARLIEST <= moment < LATEST:
            self.fail("range")
        return moment

    def to_representation(self, value):
        return value.isoformat()


# --- sources and their metrics ---------------------------------------------------------------------


class MetricSerializer(serializers.ModelSerializer):
    class Meta:
        model = Metric
        fields = ["name", "unit", "description", "labels", "expected_interval_seconds", "anomaly", "last_value",
                  "last_timestamp"]
        read_only_fields = fields


class SourceSerializer(serializers.ModelSerializer):
    status = serializers.SerializerMethodField(help_text="live, or silent after TELEMETRY_SILENT_FACTOR × its "
                                                         "expected interval without a reading.")
    metrics = MetricSerializer(many=True, read_only=True)

    class Meta:
        model = Source
        fields = ["id", "name", "project", "status", "last_seen", "description", "labels", "expected_interval_seconds",
                  "is_demo", "created_at", "metrics"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(Status.values))
    def get_status(self, source) -> str:
        return source.status_at(self.context.get("now"))


class SourceFilters(QuerySerializer):
    project = IdField(help_text="Only this project's sources (one of GET /api/projects/).")
    status = serializers.ChoiceField(Status.values, required=False, help_text="live or silent (now).")
    search = serializers.CharField(max_length=100, required=False,
                                   help_text="Part of the name or the description (case-insensitive).")
    is_demo = serializers.BooleanField(required=False, help_text="true: only the demo plant's; false: the others.")


class LabelValueField(serializers.CharField):
    """A label's value: a string as given (a number is refused, not turned into one)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("A string.")
        return super().to_internal_value(data)


def labels_field():
    return serializers.DictField(
        child=LabelValueField(max_length=services.LABEL_VALUE_MAX, allow_blank=True), required=False,
        help_text=f"At most {services.LABELS_MAX} labels; keys of 1 to {services.LABEL_KEY_MAX} characters, "
                  f"values strings of at most {services.LABEL_VALUE_MAX}. Replaces the labels.")


class SourceRegistrySerializer(serializers.Serializer):
    """The registry fields a PATCH may change."""

    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    labels = labels_field()
    expected_interval_seconds = serializers.IntegerField(min_value=1, max_value=86_400, required=False,
                                                         help_text="How often it reports (1 to 86,400 s).")


class SourceViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                    mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Telemetry sources of the user's projects, by name, each with its status (live / silent), its
    registry fields and its metrics (last value and time). Filters: `project`, `status`, `search`,
    `is_demo`. PATCH `{"description", "labels", "expected_interval_seconds"}` edits the registry
    (maintainers, or the editor who created the source: 403 naming the role otherwise). DELETE removes
    the source with its metrics, points and rollups (same roles). Another project's source: 404."""

    serializer_class = SourceSerializer
    filters_class = SourceFilters
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self):
        filters = self.filters()
        # `scoped` applies `?project=`; the selector the rest (the pages call it too).
        return selectors.sources_list(self.request.user, sources=self.scoped(Source.objects.all()),
                                      status=filters.get("status"), search=filters.get("search"),
                                      is_demo=filters.get("is_demo"))

    def filters(self) -> dict:
        if not hasattr(self, "_filters"):
            self._filters = super().filters()
        return self._filters

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": timezone.now()}

    @extend_schema(request=SourceRegistrySerializer, responses=SourceSerializer)
    def partial_update(self, request, *args, **kwargs):
        source = self.get_object()
        # Permission before validation: someone who may not change it learns nothing from a 400.
        services.source_authorize(request.user, "change", source)
        body = SourceRegistrySerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        source = services.source_update(user=request.user, source=source, **body.validated_data)
        return Response(self.get_serializer(self.get_queryset().get(pk=source.pk)).data)

    def perform_destroy(self, instance):
        services.source_delete(user=self.request.user, source=instance)


class AnomalyOverridesSerializer(serializers.Serializer):
    """Streaming detection overrides of one series (telemetry validates their shape; monitoring reads
    them). Absent fields keep the telemetry default."""

    enabled = serializers.BooleanField(required=False, help_text="false: this series is not scored.")
    direction = serializers.ChoiceField(["up", "down", "both"], required=False, help_text="Which way is bad.")
    min_change = serializers.FloatField(min_value=0, required=False,
                                        help_text="The smallest change from the baseline that counts (the unit's).")
    relative_change = serializers.FloatField(min_value=0, required=False,
                                             help_text="The smallest change as a share of the baseline.")
    agree = serializers.IntegerField(min_value=1, max_value=60, required=False,
                                     help_text="How many of the last `of` readings must be out of range.")
    of = serializers.IntegerField(min_value=1, max_value=60, required=False)
    score = serializers.FloatField(min_value=0, required=False, allow_null=True,
                                   help_text="The robust score past which a reading is out of range; null: the default.")
    alerts = serializers.BooleanField(required=False, help_text="Whether a confirmed anomaly opens an alert.")


class MetricRegistrySerializer(serializers.Serializer):
    unit = serializers.CharField(max_length=32, required=False, allow_blank=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    labels = labels_field()
    expected_interval_seconds = serializers.IntegerField(min_value=1, max_value=86_400, required=False,
                                                         allow_null=True, help_text="null: the source's.")
    anomaly = serializers.JSONField(required=False, help_text=(
        "Streaming detection overrides of this series: {enabled, direction (up|down|both), min_change (≥ 0), "
        "relative_change (≥ 0), agree and of (1 to 60, agree ≤ of), score (> 0 or null), alerts}. Replaces them; "
        "{} for the defaults."))


def _metric(source: Source, name: str) -> Metric:
    try:
        metric = selectors.metric_get(source, name)
    except Http404 as exc:  # DRF's handler would answer a bare "Not found."
        raise NotFound(str(exc)) from None
    metric.source = source
    return metric


class MetricRegistryView(APIView):
    """PATCH a metric of a source (by the source's id and the metric's name): `unit`, `description`,
    `labels`, `expected_interval_seconds` (null: the source's), `anomaly` (streaming detection
    overrides). The source's change rule applies (maintainers, or the editor who created it)."""

    http_method_names = ["patch", "options"]

    @extend_schema(request=MetricRegistrySerializer, responses=MetricSerializer)
    def patch(self, request, pk, name):
        source = selectors.sources_visible(request.user).filter(pk=pk).first()
        if source is None:
            raise Http404("No such source.")
        metric = _metric(source, name)
        services.source_authorize(request.user, "change", source)
        body = MetricRegistrySerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        metric = services.metric_update(user=request.user, metric=metric, **body.validated_data)
        return Response(MetricSerializer(metric).data)


# --- one series over a time range ------------------------------------------------------------------


class SeriesQuery(QuerySerializer):
    source = serializers.CharField(max_length=100, help_text="The source's name or id.")
    metric = serializers.RegexField(rf"^{NAME_PATTERN}\Z", max_length=100, help_text="The metric's name.")
    project = IdField(help_text="The project of a source named in several of your projects.")
    start = MomentField(required=False, help_text="Default: an hour before `end`. ISO 8601 or epoch ms.")
    end = MomentField(required=False, help_text="Default: now. ISO 8601 or epoch ms.")
    resolution = serializers.ChoiceField(
        selectors.RESOLUTIONS, required=False,
        help_text="raw, minute or hour; absent: the finest that gives at most about TELEMETRY_MAX_CHART_POINTS.")

    def validate(self, data):
        end = data.get("end") or timezone.now()
        start = data.get("start") or end - timedelta(hours=1)
        if start > end:
            raise serializers.ValidationError({"start": ["After `end`; give a start before the end."]})
        return {**data, "start": start, "end": end}


def series_for(user, ref: str, metric: str, *, project=None) -> Metric:
    """The series a request names, its source set, in one query: the source by id, or by a name that
    is unambiguous among the user's projects (a 400 naming the projects otherwise, unless `project`
    chooses); 404 for an unknown source or metric."""
    found = selectors.series_candidates(user, ref, metric, project=project)
    source = next((s for s in found if ref.isdigit() and str(s.pk) == ref), None)
    if source is None:
        named = [s for s in found if s.name == ref]
        if len(named) > 1 and project is None and not ref.isdigit():
            projects = ", ".join(f"{s.project.name} (id {s.project_id})" for s in named)
            raise ValidationError({"source": [f"Several of your projects have a source named “{ref}”: {projects}. "
                                              "Give `project`, or the source's id."]})
        if len(named) != 1:
            raise NotFound(f"No source “{ref[:100]}” in your projects.")
        source = named[0]
    if source.series_metric is None:
        raise NotFound(f"Source {source.name} has no metric {metric}.")
    return source.series_metric


def _moment_json(moment: datetime) -> str:
    """A time as DRF's encoder writes it (milliseconds, Z for UTC)."""
    text = moment.isoformat()
    if moment.microsecond:
        text = text[:23] + text[26:]
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# orjson, when installed, writes a chart's numbers about 15x faster than json (0.2 vs 3.9 ms for 1,440
# minute rows). Not pinned: telemetry/api.py's ingest parser also switches to it when importable, and
# two of its errors change then (an infinite value, a project id past 64 bits).
try:
    import orjson

    def _json(body: dict) -> bytes:
        return orjson.dumps(body)
except ImportError:  # pragma: no cover
    import json

    def _json(body: dict) -> bytes:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class SeriesView(APIView):
    """One series (a metric of a source) over [start, end], oldest first. `points` are
    `[epoch_ms, value]` (raw) or `[epoch_ms, mean, min, max, count]` (minute and hour rollups, stamped
    with the bucket's start). Without `resolution`, the finest that gives at most about
    TELEMETRY_MAX_CHART_POINTS points. At most TELEMETRY_MAX_SERIES_POINTS rows: past it, 400 asking
    for a coarser resolution or a shorter range. Unknown source or metric: 404."""

    extra_error_statuses = {"GET": {404}}

    @extend_schema(parameters=[SeriesQuery], responses=inline_serializer("TelemetrySeries", {
        "resolution": serializers.ChoiceField(selectors.RESOLUTIONS),
        "start": serializers.DateTimeField(), "end": serializers.DateTimeField(),
        "points": serializers.ListField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
                                        help_text="[epoch_ms, value] or [epoch_ms, mean, min, max, count]")}))
    def get(self, request):
        query = SeriesQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        metric = series_for(request.user, q["source"], q["metric"], project=q.get("project"))
        start, end = q["start"], q["end"]
        try:
            series = selectors.series_chart(metric, start=start, end=end, resolution=q.get("resolution"))
        except selectors.TooManyRows as exc:
            coarser = selectors.COARSER.get(exc.resolution)
            advice = f"ask for resolution={coarser}, or a shorter range" if coarser else "ask for a shorter range"
            raise ValidationError({"resolution": [
                f"More than {exc.limit:,} {exc.resolution} rows in this range (TELEMETRY_MAX_SERIES_POINTS): "
                f"{advice}."]}) from None
        # The body is lists of numbers already: written straight to JSON (DRF's renderer walks them in
        # Python); authentication, throttles and errors stay DRF's.
        body = {**series.as_json(), "start": _moment_json(start), "end": _moment_json(end)}
        return HttpResponse(_json(body), content_type="application/json")
