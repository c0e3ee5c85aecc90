"""REST API of the pipelines app: pipelines (CRUD, run) and their runs (cancel, retry).

A pipeline is `{"project": <id>, "name", "description", "dataset": <id>, "schedule", "steps": [{"kind", "options"}]}`.
It belongs to a project (given on create: required when the user may create in several; its dataset
must be in it); its runs belong to the pipeline's project. Lists show only the projects the user is
a member of (`?project=` narrows them); other projects' pipelines and runs are 404.
Its steps are checked here, at the edge, with errors that name the step
(`steps[2] (train_model): epochs must be between 1 and 500`), so a bad definition gets a 400 and
nothing is saved.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from datasets import selectors as datasets_selectors
from mlops_dashboard import permissions, projects
from mlops_dashboard.filters import ChoicesListField, IdField, ProjectFilters, ProjectScopedMixin
from mlops_dashboard.jobs import JobStatus

from . import selectors, services
from . import steps as step_kinds
from .models import Pipeline, PipelineRun, StepRun


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


def _as_drf(exc: DjangoValidationError) -> exceptions.ValidationError:
    return exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages})


# --- serializers ----------------------------------------------------------------------------------


class StepRunSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    duration = serializers.FloatField(read_only=True)
    output_dataset_name = serializers.SerializerMethodField()
    model_version_label = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = StepRun
        fields = [
            "id", "index", "kind", "label", "options", "status", "progress", "started_at", "finished_at", "duration",
            "input_dataset", "output_dataset", "output_dataset_name", "model_version", "model_version_label",
            "processing_job", "training_job", "metrics", "output", "log", "error", "reused", "reused_from", "links",
        ]
        read_only_fields = fields

    def get_output_dataset_name(self, step) -> str | None:
        return step.output_dataset.name if step.output_dataset_id and step.output_dataset else None

    def get_model_version_label(self, step) -> str | None:
        return step.model_version.label if step.model_version_id and step.model_version else None

    def get_links(self, step) -> dict:
        return step_links(step)


def step_links(step: StepRun) -> dict:
    """Pages about what a step worked on and produced."""
    links = {}
    if step.output_dataset_id:
        links["dataset"] = reverse("datasets:detail", args=[step.output_dataset_id])
    elif step.input_dataset_id:
        links["dataset"] = reverse("datasets:detail", args=[step.input_dataset_id])
    if step.training_job_id:
        links["training_job"] = reverse("training:job-detail", args=[step.training_job_id])
    if step.model_version_id:
        links["model"] = reverse("training:models") + f"#model-{step.model_version_id}"
    return links


class PipelineRunSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True, help_text="The pipeline's project.")
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    duration = serializers.FloatField(read_only=True)
    total_steps = serializers.IntegerField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = PipelineRun
        fields = [
            "id", "project", "pipeline", "pipeline_name", "status", "progress", "trigger", "retry_of", "dataset", "steps",
            "total_steps", "current_step", "failed_step", "message", "error", "cancel_requested", "context",
            "created_by", "created_at", "started_at", "finished_at", "duration", "url",
        ]
        read_only_fields = fields

    def get_url(self, run) -> str:
        return reverse("pipelines:run-detail", args=[run.pk])


class PipelineRunDetailSerializer(PipelineRunSerializer):
    step_runs = StepRunSerializer(many=True, read_only=True)

    class Meta(PipelineRunSerializer.Meta):
        fields = PipelineRunSerializer.Meta.fields + ["step_runs"]
        read_only_fields = fields


class StepSerializer(serializers.Serializer):
    """One step (documentation only: the list is checked as a whole by pipelines.steps)."""

    kind = serializers.ChoiceField(choices=step_kinds.KINDS)
    options = serializers.DictField(required=False)


class PipelineSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(
        source="project_id", required=False, min_value=1, max_value=10**18 - 1,
        help_text="The project (one of GET /api/projects/). On create: required when you may create in several "
                  "projects, else your only one; a project you cannot see is a 404. It never changes afterwards.",
    )
    dataset = serializers.PrimaryKeyRelatedField(
        queryset=datasets_selectors.datasets_all(),
        error_messages={
            "does_not_exist": "Dataset {pk_value} does not exist.",
            "incorrect_type": "A dataset is given by its integer id, not {data_type}.",
            "required": "Choose the input dataset.",
            "null": "Choose the input dataset.",
        },
    )
    dataset_name = serializers.SerializerMethodField()
    steps = serializers.JSONField(help_text='[{"kind": "train_model", "options": {...}}, ...], run in order.')
    schedule = serializers.CharField(required=False, allow_blank=True, max_length=120,
                                     help_text='A cron expression, e.g. "0 3 * * *"; empty for none.')
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    last_run = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = ["id", "project", "name", "description", "dataset", "dataset_name", "steps", "schedule", "max_concurrent_runs",
                  "created_by", "created_at", "updated_at", "last_run", "url"]
        read_only_fields = ["id", "dataset_name", "created_by", "created_at", "updated_at", "last_run", "url"]

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:  # other projects' datasets do not exist for this user
            fields["dataset"].queryset = permissions.visible(fields["dataset"].queryset, request.user)
        return fields

    def validate_project(self, value):
        if self.instance is not None and value != self.instance.project_id:
            raise serializers.ValidationError(f"A pipeline stays in its project ({self.instance.project_id}); "
                                              "leave `project` out or give that one.")
        return value

    def get_dataset_name(self, pipeline) -> str | None:
        return pipeline.dataset.name if pipeline.dataset_id and pipeline.dataset else None

    def get_last_run(self, pipeline) -> dict | None:
        if hasattr(pipeline, "last_run"):  # lists attach it to the page in one query
            run = pipeline.last_run
        else:
            run = pipeline.runs.select_related("pipeline", "created_by").order_by("-created_at", "-id").first()
        return PipelineRunSerializer(run).data if run is not None else None

    def get_url(self, pipeline) -> str:
        return reverse("pipelines:detail", args=[pipeline.pk])

    def validate_schedule(self, value):
        try:
            return services.validate_schedule(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["schedule"]) from None

    def validate(self, attrs):
        dataset = attrs.get("dataset", getattr(self.instance, "dataset", None))
        steps = attrs.get("steps", getattr(self.instance, "steps", None))
        if "steps" in attrs or "dataset" in attrs:
            try:
                attrs["steps"] = services.pipeline_steps_clean(steps=steps, dataset=dataset)
            except DjangoValidationError as exc:
                raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class RunRequestSerializer(serializers.Serializer):
    project = IdField(help_text="Optional: the pipeline's project (a different one is a 400).")


# --- views ------------------------------------------------------------------------------------------


ROLES = ("Creating and running need the editor role in the project; editing, deleting and cancelling "
         "need it for what you created, else the maintainer role. 403 names the role missing.")


class PipelineViewSet(ProjectScopedMixin, viewsets.ModelViewSet):
    """Pipelines: define (POST), change (PUT/PATCH), delete, and run them.

    Live: `pipeline_created/updated/deleted`, and for runs `pipeline_status`, `pipeline_progress`,
    `pipeline_completed` / `pipeline_failed` on the `project.<id>` and `pipeline.<id>` topics.
    """

    queryset = Pipeline.objects.select_related("project", "dataset", "created_by")
    serializer_class = PipelineSerializer
    filters_class = ProjectFilters

    def get_queryset(self):
        queryset = self.scoped(super().get_queryset())
        return selectors.pipelines_annotated(queryset) if self.action == "list" else queryset

    @extend_schema(description=ROLES, responses={201: PipelineSerializer})
    def create(self, request, *args, **kwargs):
        # The project first: an invisible one is a 404 and a missing role a 403, whatever the body.
        body = request.data if hasattr(request.data, "get") else {}
        projects.project_for_create(request.user, body.get("project"))
        return super().create(request, *args, **kwargs)

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else selectors.pipelines_attach_last_run(page)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        project = data.pop("project_id", None)
        try:
            serializer.instance = services.pipeline_create(user=self.request.user, project=project, **data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_update(self, serializer):
        data = dict(serializer.validated_data)
        data.pop("project_id", None)
        try:
            serializer.instance = services.pipeline_update(user=self.request.user, pipeline=serializer.instance, **data)
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None

    def perform_destroy(self, instance):
        try:
            services.pipeline_delete(user=self.request.user, pipeline=instance)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None

    @extend_schema(request=RunRequestSerializer, responses={201: PipelineRunDetailSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Start a run: 201 with the run (`queued`; it starts when the pipeline has a free run slot).
        Needs the editor role; the run is in the pipeline's project (a different `project` is a 400).
        Its steps act as you: a deploy_model step needs you to be a maintainer."""
        pipeline = self.get_object()
        body = RunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            run = services.pipeline_run_start(user=request.user, pipeline=pipeline,
                                              project=body.validated_data.get("project"))
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None
        run = PipelineRun.objects.select_related("pipeline").get(pk=run.pk)
        return Response(PipelineRunDetailSerializer(run).data, status=status.HTTP_201_CREATED,
                        headers={"Location": f"/api/pipeline-runs/{run.pk}/"})


class PipelineRunFilters(ProjectFilters):
    pipeline = IdField(help_text="Only runs of this pipeline.")
    status = ChoicesListField(JobStatus.values, required=False)


class PipelineRunViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pipeline runs: follow one (its steps, outputs and logs), cancel it, retry it.

    Live: `pipeline_step` (each step's state and new log lines) on the `pipeline_run.<id>` topic.
    """

    queryset = PipelineRun.objects.select_related("project", "pipeline", "created_by")
    filters_class = PipelineRunFilters

    def get_serializer_class(self):
        return PipelineRunSerializer if self.action == "list" else PipelineRunDetailSerializer

    def get_queryset(self):
        queryset = self.scoped(super().get_queryset())
        if self.action == "list":
            filters = self.filters()
            if "pipeline" in filters:
                queryset = queryset.filter(pipeline_id=filters["pipeline"])
            if "status" in filters:
                queryset = queryset.filter(status__in=filters["status"])
        else:
            queryset = queryset.prefetch_related("step_runs__output_dataset", "step_runs__model_version")
        return queryset

    @extend_schema(request=None, responses=PipelineRunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a run: a queued one at once; a running one stops as its current step's job stops
        (later steps are skipped). 409 when it has already ended. The run's creator (editor) or a
        maintainer."""
        run = self.get_object()
        try:
            run = services.pipeline_run_cancel(user=request.user, run=run)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(PipelineRunDetailSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(request=None, responses={201: PipelineRunDetailSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Retry a failed or cancelled run (409 otherwise): a new run of the pipeline's current
        definition that reuses the outputs of the steps that succeeded and starts at the first other one.
        Needs the editor role."""
        run = self.get_object()
        try:
            new = services.pipeline_run_retry(user=request.user, run=run)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        except DjangoValidationError as exc:
            raise _as_drf(exc) from None
        return Response(PipelineRunDetailSerializer(self.get_queryset().get(pk=new.pk)).data,
                        status=status.HTTP_201_CREATED, headers={"Location": f"/api/pipeline-runs/{new.pk}/"})
