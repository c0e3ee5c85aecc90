"""REST API of telemetry: ingest (`POST /api/telemetry/`) and CSV imports of history.

Ingest is the hot path: the body is parsed once (orjson when installed) and its points validated in
one loop (telemetry/ingest.py), never a serializer per point; DRF still does authentication, token
scopes, throttles and the schema."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_dashboard import projects
from mlops_dashboard.api_errors import PROBLEM, problem

from . import services
from .ingest import NAME, PointError, readings_parse

try:  # a few times faster than json on large bodies; optional
    import orjson as _json

    _loads, _DecodeError = _json.loads, _json.JSONDecodeError
except ImportError:  # pragma: no cover - depends on the environment
    import json as _json

    _loads, _DecodeError = _json.loads, ValueError

MAX_PROJECT_ID = 2**63 - 1
# The ingest body limit: TELEMETRY_MAX_POINTS points of long names fit (registered in apps.py).
BYTES_PER_POINT = 400


def ingest_body_limit() -> int:
    return settings.TELEMETRY_MAX_POINTS * BYTES_PER_POINT + 64 * 1024


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request is too large."
    default_code = "too_large"


class RawJSONParser(BaseParser):
    """The body as plain Python objects, parsed in one call (DRF's JSONParser reads a stream)."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        try:
            return _loads(body)
        except (_DecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from None


@extend_schema_field({"oneOf": [{"type": "string", "format": "date-time"},
                                {"type": "number", "description": "Epoch milliseconds."}],
                      "description": "ISO 8601 (without an offset: UTC) or epoch milliseconds; left out (or "
                                     "null): the server's time. From 2000-01-01 to a day after the server's time."})
class TimestampField(serializers.Field):
    pass


class TelemetryPointSerializer(serializers.Serializer):
    source = serializers.RegexField(NAME.pattern, max_length=100, help_text="The source's name (made on first sight).")
    metric = serializers.RegexField(NAME.pattern, max_length=100, help_text="The metric's name (made on first sight).")
    value = serializers.FloatField(help_text="A finite number.")
    timestamp = TimestampField(required=False, allow_null=True)


class TelemetryIngestSerializer(serializers.Serializer):
    project = serializers.IntegerField(required=False, min_value=1, help_text=(
        "The project (id). Optional when you may write to only one project, or the token is limited to one."))
    points = TelemetryPointSerializer(many=True, help_text="Up to TELEMETRY_MAX_POINTS (10,000) points.")


INGEST_ACCEPTED = inline_serializer("TelemetryIngestAccepted", {
    "accepted": serializers.IntegerField(help_text="How many points of the request were stored."),
})


def _problem(status_code: int, detail: str, **kwargs) -> Response:
    return Response(problem(status_code, detail, **kwargs), status=status_code, content_type=PROBLEM)


def project_param(value, field: str = "project"):
    """A project id as given (None when left out), bounded so the database never sees a wild one."""
    if value is None or value == "":
        return None
    if type(value) is bool or not isinstance(value, (int, str)):
        raise serializers.ValidationError({field: ["A project id (an integer)."]})
    try:
        number = int(value)
    except ValueError:
        raise serializers.ValidationError({field: ["A project id (an integer)."]}) from None
    if not 1 <= number <= MAX_PROJECT_ID:
        raise exceptions.NotFound("No such project.")
    return number


class TelemetryIngestView(APIView):
    """Send readings. The one endpoint a token of scope `telemetry` may call."""

    token_scopes = ("telemetry",)
    parser_classes = [RawJSONParser]

    @extend_schema(
        request=TelemetryIngestSerializer,
        responses={202: INGEST_ACCEPTED},
        operation_id="telemetry_ingest",
        description=(
            "Store readings: `{\"project\": 3, \"points\": [{\"source\": \"press-07\", \"metric\": \"temperature\", "
            "\"value\": 71.3, \"timestamp\": \"2026-12-02T10:00:00Z\"}, ...]}`. Sources and metrics are made on first "
            "sight (up to TELEMETRY_MAX_SOURCES per project, TELEMETRY_MAX_METRICS per source: past those, 400). "
            "The same (source, metric, timestamp) twice: the last value wins. Names: `[A-Za-z0-9._-]{1,100}`. "
            "A bad point is a 400 naming the first one by index and field (`errors.points.<index>.<field>`), and "
            "nothing of the request is stored. More than TELEMETRY_MAX_POINTS points: 413. Who may: an editor of "
            "the project (403 names the role), with a session, a token of scope `all`, or one of scope `telemetry`."
        ),
    )
    def post(self, request):
        now = timezone.now()
        body = request.data
        if type(body) is not dict:
            raise serializers.ValidationError({"non_field_errors": ["A JSON object: {project?, points: [...]}."]})
        points = body.get("points")
        if points is None:
            raise serializers.ValidationError({"points": ["Required: a list of points."]})
        if type(points) is list and len(points) > settings.TELEMETRY_MAX_POINTS:
            raise PayloadTooLarge(f"{len(points):,} points: at most {settings.TELEMETRY_MAX_POINTS:,} per request "
                                  "(TELEMETRY_MAX_POINTS); send smaller batches.")
        project = projects.project_for_create(request.user, project_param(body.get("project")))
        try:
            readings = readings_parse(points, now)
        except PointError as exc:
            return _point_error(exc)
        if not readings:
            raise serializers.ValidationError({"points": ["At least one point."]})
        accepted = services.points_ingest(user=request.user, project=project, readings=readings, now=now)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


def _point_error(exc: PointError) -> Response:
    if exc.index is None:
        return _problem(400, f"{exc.field}: {exc.message}", errors={exc.field: [exc.message]}, code="invalid")
    where = f"points[{exc.index}]" + (f".{exc.field}" if exc.field else "")
    inner = {exc.field: [exc.message]} if exc.field else [exc.message]
    return _problem(400, f"{where}: {exc.message}", errors={"points": {str(exc.index): inner}}, code="invalid")
