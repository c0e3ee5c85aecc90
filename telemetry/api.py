"""REST API of telemetry: ingest (`POST /api/telemetry/`) and CSV imports of history.

Ingest is the hot path: the body is parsed once (orjson when installed) and its points validated in
one loop (telemetry/ingest.py), never a serializer per point; DRF still does authentication, token
scopes, throttles and the schema."""

from __future__ import annotations

import gc
import json as _json

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.generics import RetrieveAPIView
from rest_framework.parsers import BaseParser, FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops_dashboard import permissions, projects
from mlops_dashboard.api_errors import PROBLEM, problem
from mlops_dashboard.schema import ProblemAutoSchema

from . import imports, services
from .ingest import NAME, NAME_RULE, PointError, readings_parse
from .models import TelemetryImport

try:  # a few times faster than json on large bodies; optional
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def _loads(body: bytes, parser_context=None):
    """The body parsed: by orjson when installed, else (and whatever orjson refuses) by json.

    orjson reads an integer beyond 64 bits as a float where json keeps it exact: the ingest view
    redoes its checks on json's reading whenever that could change the answer (`_exact`), so that
    both give the same answers and errors. For that, the body of an orjson parse is kept on the
    request."""
    if _orjson is not None:
        try:
            data = _orjson.loads(body)
        except _orjson.JSONDecodeError:
            pass
        else:
            if parser_context is not None and parser_context.get("request") is not None:
                parser_context["request"].telemetry_raw_body = body
            return data
    return _json.loads(body)


def _exact(request):
    """The body as json reads it, when orjson parsed it (else None)."""
    raw = getattr(request, "telemetry_raw_body", None)
    return None if raw is None else _json.loads(raw)


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
            return _loads(body, parser_context)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
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
        # A request makes thousands of small objects (the parsed body; a time, a value and a live
        # point per point), all freed by reference counting: the cyclic collector, run every 700 of
        # them, would only walk the process's heap meanwhile (~3 ms of a 1,000-point request).
        # Paused for the request.
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            return self._post(request)
        finally:
            if paused:
                gc.enable()

    def _post(self, request):
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
        if type(body.get("project")) is float and (exact := _exact(request)) is not None:
            body = exact  # perhaps an integer past 64 bits (a 404), not a float (a 400)
            points = body["points"]
        project = projects.project_for_create(request.user, project_param(body.get("project")))
        try:
            readings = readings_parse(points, now)
        except PointError as exc:
            if (exact := _exact(request)) is not None:  # the error as json's reading gives it
                try:
                    readings_parse(exact["points"], now)
                except PointError as error:
                    exc = error
            return _point_error(exc)
        if not readings.count:
            raise serializers.ValidationError({"points": ["At least one point."]})
        accepted = services.points_ingest(user=request.user, project=project, readings=readings, now=now)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


def _point_error(exc: PointError) -> Response:
    if exc.index is None:
        return _problem(400, f"{exc.field}: {exc.message}", errors={exc.field: [exc.message]}, code="invalid")
    where = f"points[{exc.index}]" + (f".{exc.field}" if exc.field else "")
    inner = {exc.field: [exc.message]} if exc.field else [exc.message]
    return _problem(400, f"{where}: {exc.message}", errors={"points": {str(exc.index): inner}}, code="invalid")


# --- CSV imports of history -----------------------------------------------------------------------


def max_upload_bytes() -> int:
    return settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024


def import_precheck(user, query) -> None:
    """What can be told of an import before its body (run by the ASGI layer too, datasets/upload.py):
    the project in the URL (404 unseen, 403 without the editor role, 400 not an id); none there, the
    user must be an editor somewhere; a `?source=` must be a name."""
    project = query.get("project")
    if project not in (None, ""):
        projects.project_for_create(user, project)
    elif not projects.creatable_projects(user):
        raise PermissionDenied("Importing telemetry needs the editor role in a project; you are not an editor of any.")
    source = query.get("source")
    if source not in (None, "") and NAME.fullmatch(source) is None:
        raise DjangoValidationError({"source": f"A name of {NAME_RULE}."})


class TelemetryImportSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField(help_text="Where to follow it: GET it until `status` is terminal.")
    duration = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = TelemetryImport
        fields = ["id", "url", "project", "status", "progress", "original_filename", "file_size", "format", "source",
                  "rows", "points", "first_timestamp", "last_timestamp", "error", "created_at", "started_at",
                  "finished_at", "duration"]
        read_only_fields = fields

    def get_url(self, obj) -> str:
        return reverse("api-telemetry-import-detail", args=[obj.pk])


class TelemetryImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, help_text=(
        "A CSV: long `timestamp,source,metric,value` (source may be left out for `source`), or wide "
        "`timestamp,<metric>,<metric>...` with a `source` column or `source` given. Timestamps ISO 8601 (UTC "
        "without an offset) or epoch milliseconds; an empty cell of a wide file is no reading."))
    project = serializers.IntegerField(min_value=1, max_value=MAX_PROJECT_ID, required=False, help_text=(
        "The project (or `?project=` in the URL, checked before the body is read). Required when you may "
        "write to several projects."))
    source = serializers.RegexField(NAME.pattern, max_length=100, required=False, help_text=(
        "The source of every reading, for a file without a `source` column (or `?source=`)."))


IMPORT_QUERY = [
    OpenApiParameter("project", int, OpenApiParameter.QUERY, required=False,
                     description="The project, instead of the form field: checked (404, 403, 400) before the body "
                                 "is read."),
    OpenApiParameter("source", str, OpenApiParameter.QUERY, required=False, pattern=NAME.pattern,
                     description="The source, instead of the form field (a file without a `source` column)."),
]


class TelemetryImportSchema(ProblemAutoSchema):
    """An import names a project that may be invisible to its user: 404 too (the path has none)."""

    def error_statuses(self) -> set[int]:
        return super().error_statuses() | {404}


class TelemetryImportView(APIView):
    parser_classes = [MultiPartParser, FormParser]
    schema = TelemetryImportSchema()

    @extend_schema(
        request={"multipart/form-data": TelemetryImportUploadSerializer},
        responses={202: TelemetryImportSerializer},
        parameters=IMPORT_QUERY,
        operation_id="telemetry_import",
        description=(
            "Import a CSV of history. The upload streams to disk (DATASET_MAX_UPLOAD_MB, UPLOADS_PER_USER, "
            "`upload_progress` events as for datasets) and its header is checked at once (400); a worker then "
            "checks every line and writes the points, reporting `telemetry_import_progress` and "
            "`telemetry_import_completed` on `user.<id>` and `project.<id>`. All or nothing: a bad line fails the "
            "import naming the line, and nothing is stored. Answers 202 with the import; follow `url`. Who may: "
            "an editor of the project (403 names the role)."
        ),
    )
    def post(self, request):
        query = request.query_params
        import_precheck(request.user, query)  # before the body (the ASGI layer has run it too)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_upload_bytes():
            raise PayloadTooLarge(_too_large())
        serializer = TelemetryImportUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = data["file"]
        if upload.size > max_upload_bytes():
            raise PayloadTooLarge(_too_large())
        project = _one_of(query, data, "project")
        source = _one_of(query, data, "source") or ""
        job = imports.telemetry_import_create(user=request.user, uploaded_file=upload, project=project,
                                              source=source)
        return Response(TelemetryImportSerializer(job).data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": reverse("api-telemetry-import-detail", args=[job.pk])})


def _one_of(query, data, name: str):
    in_url, in_form = query.get(name) or None, data.get(name)
    if in_url is not None and in_form is not None and str(in_form) != str(in_url):
        raise serializers.ValidationError({name: [f"The URL names {name} {in_url} and the form {in_form}: give one."]})
    return in_url if in_url is not None else in_form


def _too_large() -> str:
    return f"The file is larger than the {settings.DATASET_MAX_UPLOAD_MB} MB upload limit (DATASET_MAX_UPLOAD_MB)."


class TelemetryImportDetailView(RetrieveAPIView):
    """An import of telemetry history: its status, progress, counts and, when it failed, why."""

    serializer_class = TelemetryImportSerializer

    def get_object(self):
        return permissions.get_visible(TelemetryImport.objects.all(), self.request.user, pk=self.kwargs["pk"])
