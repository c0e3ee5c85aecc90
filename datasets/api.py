"""REST API for datasets and processing jobs."""

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response

from mlops_dashboard.api_errors import problem_response
from mlops_dashboard.filters import ChoicesListField, FilteredListMixin, QuerySerializer
from mlops_dashboard.models import DESCRIPTION_MAX_LENGTH

from . import services
from .models import Dataset, ProcessingJob


class ProcessingJobSerializer(serializers.ModelSerializer):
    duration = serializers.FloatField(read_only=True)

    class Meta:
        model = ProcessingJob
        fields = ["id", "dataset", "operation", "options", "status", "progress", "current_step", "result", "error",
                  "cancel_requested", "created_at", "started_at", "finished_at", "duration"]
        read_only_fields = fields


class ProcessingJobCreateSerializer(serializers.Serializer):
    operation = serializers.ChoiceField(choices=ProcessingJob.Operation.choices)
    options = serializers.DictField(required=False, default=dict)


class DatasetSerializer(serializers.ModelSerializer):
    rows = serializers.IntegerField(source="row_count", read_only=True)
    columns = serializers.IntegerField(source="column_count", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    lineage = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "description", "status", "original_filename", "file_size", "target_column",
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


def max_upload_bytes() -> int:
    return settings.DATASET_MAX_UPLOAD_MB * 1024 * 1024


def too_large_response():
    return problem_response(413, f"The file is larger than the {settings.DATASET_MAX_UPLOAD_MB} MB upload limit "
                                 "(DATASET_MAX_UPLOAD_MB).", code="too_large")


class DatasetFilters(QuerySerializer):
    status = ChoicesListField(Dataset.Status.values, required=False)


class DatasetViewSet(FilteredListMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                     mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Datasets: upload (multipart), list, read with profile, edit, delete, re-profile, jobs."""

    queryset = Dataset.objects.select_related("created_by", "parent").all()
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filters_class = DatasetFilters

    def get_serializer_class(self):
        if self.action == "create":
            return DatasetUploadSerializer
        if self.action in ("retrieve", "partial_update"):
            return DatasetDetailSerializer
        return DatasetSerializer

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action == "list":
            qs = qs.defer("profile", "quality", "preview")
            wanted = self.filters().get("status")
            if wanted:
                qs = qs.filter(status__in=wanted)
        return qs

    @extend_schema(request={"multipart/form-data": DatasetUploadSerializer}, responses={201: DatasetSerializer})
    def create(self, request, *args, **kwargs):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > max_upload_bytes():  # refuse before reading the body
            return too_large_response()
        serializer = DatasetUploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        upload = serializer.validated_data["file"]
        if upload.size > max_upload_bytes():
            return too_large_response()
        dataset = services.dataset_create_from_upload(
            user=request.user, uploaded_file=upload, name=serializer.validated_data["name"],
            target_column=serializer.validated_data["target_column"],
            description=serializer.validated_data["description"],
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.dataset_update(
            dataset=serializer.instance, name=data.get("name"), description=data.get("description"),
            target_column=data.get("target_column"),
        )

    def perform_destroy(self, instance):
        services.dataset_delete(dataset=instance)

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
        dataset = services.dataset_reprofile(dataset=self.get_object())
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


class ProcessingJobViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = ProcessingJob.objects.all()
    serializer_class = ProcessingJobSerializer

    @extend_schema(request=None, responses=ProcessingJobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        with transaction.atomic():
            job = services.processing_job_cancel(job=self.get_object())
        return Response(ProcessingJobSerializer(job).data)
