"""REST API for datasets and processing jobs.

Lists hold what the user may see (`?project=` narrows them), another project's object is a 404, and
writes go through the services, which check the role (403 naming it). An upload names its project
as a form field or as `?project=` in the URL; in the URL it is checked before the body is read.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from mlops_dashboard.api_errors import problem_response
from mlops_dashboard import projects
from mlops_dashboard.filters import ChoicesListField, IdField, ProjectFilters, ProjectScopedMixin
from mlops_dashboard.models import DESCRIPTION_MAX_LENGTH
from mlops_dashboard.schema import ProblemAutoSchema

from . import services
from .models import Dataset, ProcessingJob


class ProcessingJobSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True)

    class Meta:
        model = ProcessingJob
        fields = ["id", "project", "dataset", "operation", "options", "status", "progress", "current_step", "result", "error",
                  "cancel_requested", "created_at", "started_at", "finished_at", "duration"]
        read_only_fields = fields


class ProcessingJobCreateSerializer(serializers.Serializer):
    operation = serializers.ChoiceField(choices=ProcessingJob.Operation.choices)
    options = serializers.DictField(required=False, default=dict)
    project = IdField(help_text="The dataset's project (the job goes there); another one is a 400.")


class DatasetSerializer(serializers.ModelSerializer):
    rows = serializers.IntegerField(source="row_count", read_only=True)
    columns = serializers.IntegerField(source="column_count", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    lineage = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "description", "status", "original_filename", "file_size", "target_column",
                  "encoding", "delimiter", "rows", "columns", "column_names", "errors", "warnings", "quality_score",
                  "parent", "source_job", "lineage", "created_by", "created_at", "updated_at"]
        read_only_fields = [f for f in fields if f not in ("name", "description", "target_column")]

    def get_lineage(self, obj) -> list[int]:
        return [d.pk for d in obj.lineage()]

    def validate_target_column(self, value):
        if value and self.instance and self.instance.column_names and value not in self.instance.column_names:
            raise serializers.ValidationError(f"{value!r} is not a column of this dataset.")
        return value


class DatasetDetailSerializer(DatasetSerializer):
    class Meta(DatasetSerializer.Meta):
        fields = DatasetSerializer.Meta.fields + ["profile", "quality", "validation_time", "profiling_time"]
        read_only_fields = DatasetSerializer.Meta.read_only_fields + ["profile", "quality", "validation_time",
                                                                      "profiling_time"]


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    target_column = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    description = serializers.CharField(max_length=DESCRIPTION_MAX_LENGTH, required=False, allow_blank=True,
                                        default="")
    project = IdField(help_text="The project it goes to (or `?project=` in the URL, checked before the body is "
                                "read). Required when you may upload to several projects.")


def max_upload_bytes() -> int:
    return settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024


def too_large_response():
    return problem_response(413, f"The file is larger than the {settings.DATASET_MAX_UPLOAD_MB} MB upload limit "
                                 "(DATASET_MAX_UPLOAD_MB).", code="too_large")


UPLOAD_PROJECT = OpenApiParameter(
    "project", int, OpenApiParameter.QUERY, required=False,
    description="The project the upload goes to, instead of the form field: checked (404, 403, 400) before "
                "the body is read.")


def upload_precheck(user, query) -> None:
    """What can be told of an upload before its body: the project in the URL (404 if the user cannot
    see it, 403 without the editor role, 400 if not an id); none there, the user must be an editor
    somewhere (which project is settled by the form field, or it is the only one)."""
    project = query.get("project")
    if project not in (None, ""):
        projects.project_for_create(user, project)
    elif not projects.creatable_projects(user):
        raise PermissionDenied("Uploading needs the editor role in a project; you are not an editor of any.")


class DatasetSchema(ProblemAutoSchema):
    """An upload names a project that may be invisible to its user: 404 too."""

    def error_statuses(self) -> set[int]:
        statuses = super().error_statuses()
        if self.method == "POST":
            statuses.add(404)
        return statuses


class DatasetFilters(ProjectFilters):
    status = ChoicesListField(Dataset.Status.values, required=False)


class DatasetViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                     mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Datasets: upload (multipart), list, read with profile, edit, delete, re-profile, jobs."""

    queryset = Dataset.objects.select_related("created_by", "parent").all()
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filters_class = DatasetFilters
    schema = DatasetSchema()

    def get_serializer_class(self):
        if self.action == "create":
            return DatasetUploadSerializer
        if self.action in ("retrieve", "partial_update"):
            return DatasetDetailSerializer
        return DatasetSerializer

    def get_queryset(self):
        qs = self.scoped(super().get_queryset())
        if self.action == "list":
            qs = qs.defer("profile", "quality", "preview")
            wanted = self.filters().get("status")
            if wanted:
                qs = qs.filter(status__in=wanted)
        return qs

    @extend_schema(request={"multipart/form-data": DatasetUploadSerializer}, responses={201: DatasetSerializer},
                   parameters=[UPLOAD_PROJECT])
    def create(self, request, *args, **kwargs):
        # Before the body (the ASGI layer has run this too: here for other servers and tests).
        query = request.query_params
        upload_precheck(request.user, query)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_upload_bytes():  # refuse before reading the body
            return too_large_response()
        serializer = DatasetUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        in_url, in_form = query.get("project") or None, data.get("project")
        if in_url is not None and in_form is not None and str(in_form) != str(in_url):
            raise ValidationError({"project": f"The URL names project {in_url} and the form {in_form}: give one."})
        upload = data["file"]
        if upload.size > max_upload_bytes():
            return too_large_response()
        dataset = services.dataset_create_from_upload(
            user=request.user, uploaded_file=upload, project=in_url or in_form, name=data["name"],
            target_column=data["target_column"], description=data["description"],
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.dataset_update(
            user=self.request.user, dataset=serializer.instance, name=data.get("name"), description=data.get("description"),
            target_column=data.get("target_column"),
        )

    def perform_destroy(self, instance):
        services.dataset_delete(user=self.request.user, dataset=instance)

    @extend_schema(responses=inline_serializer("DatasetStatistics", {
        "status": serializers.CharField(), "profile": serializers.DictField(allow_null=True),
        "quality": serializers.DictField(allow_null=True), "quality_score": serializers.FloatField(allow_null=True),
        "preview": serializers.DictField(allow_null=True)}))
    @action(detail=True, methods=["get"])
    def statistics(self, request, pk=None):
        """The stored profile (per column and per dataset), quality score with findings, first rows."""
        dataset = self.get_object()
        return Response({"id": dataset.pk, "status": dataset.status, "profile": dataset.profile,
                         "quality": dataset.quality, "quality_score": dataset.quality_score,
                         "preview": dataset.preview})

    @extend_schema(request=None, responses={202: DatasetSerializer})
    @action(detail=True, methods=["post"])
    def reprofile(self, request, pk=None):
        dataset = services.dataset_reprofile(user=request.user, dataset=self.get_object())
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(methods=["get"], responses=ProcessingJobSerializer(many=True))
    @extend_schema(methods=["post"], request=ProcessingJobCreateSerializer, responses={201: ProcessingJobSerializer})
    @action(detail=True, methods=["get", "post"], parser_classes=[JSONParser, FormParser])
    def jobs(self, request, pk=None):
        """List this dataset's processing jobs, or start one: clean, split or scale."""
        dataset = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(dataset.jobs.all())
            return self.get_paginated_response(ProcessingJobSerializer(page, many=True).data)
        serializer = ProcessingJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = services.processing_job_create(dataset=dataset, user=request.user, **serializer.validated_data)
        return Response(ProcessingJobSerializer(job).data, status=status.HTTP_201_CREATED)


class ProcessingJobViewSet(ProjectScopedMixin, viewsets.ReadOnlyModelViewSet):
    queryset = ProcessingJob.objects.all()
    serializer_class = ProcessingJobSerializer

    def get_queryset(self):
        return self.scoped(super().get_queryset())

    @extend_schema(request=None, responses=ProcessingJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        with transaction.atomic():
            job = services.processing_job_cancel(user=request.user, job=self.get_object())
        return Response(ProcessingJobSerializer(job).data)
