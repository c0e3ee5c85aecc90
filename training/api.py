"""REST API of the training app: training jobs, model versions (deploy, predict) and deployments.

Input is validated here, at the edge, so a bad request gets a 400 that says which field is wrong
and nothing is written; services re-check their own rules.
"""

from __future__ import annotations

from django.db.models import Q
from django.http import Http404
from django.http.request import RawPostDataException
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from datasets import selectors as datasets_selectors
from mlops_dashboard import fast_json, permissions
from mlops_dashboard.filters import ChoicesListField, IdField, ProjectFilters, ProjectScopedMixin
from mlops_dashboard.jobs import JobStatus
from mlops_dashboard.models import Project

from . import counters, selectors, services
from .models import ALGORITHMS, MAX_EPOCHS, Deployment, ModelVersion, TrainingJob, validate_model_name

# A JSON body larger than this is refused before it is read (10,000 wide rows fit): by the ASGI
# layer (registered in apps.py), and here for callers that skip it (the test client).
MAX_PREDICT_BODY = 32 * 1024 * 1024
PREDICT_TOO_LARGE = f"The request body is larger than {MAX_PREDICT_BODY // (1024 * 1024)} MiB; send smaller batches."
PREDICT_URL_NAMES = ("model-version-predict", "model-predict-by-name", "project-model-predict")
# Who may predict: anyone who may read the model (viewer and up); a token of scope `predict` may too.
PREDICT_WHO = ("Who may: any member of the model's project (viewer and up: predicting is reading), or a "
               "token of scope `predict` (or `all`) of such a member.")


class ConflictError(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's current state does not allow this."
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


class ModelUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The model cannot serve predictions."
    default_code = "ARTIFACT_INTEGRITY"


# --- serializers ----------------------------------------------------------------------------------


class TrainingJobSerializer(serializers.ModelSerializer):
    total_epochs = serializers.IntegerField(source="epochs", read_only=True)
    model_version = serializers.SerializerMethodField()
    model_label = serializers.SerializerMethodField()
    duration = serializers.FloatField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id", "project", "name", "dataset", "dataset_name", "target_column", "task", "algorithm", "epochs", "test_size",
            "status", "progress", "stage", "current_epoch", "total_epochs", "current_loss", "live_accuracy",
            "estimated_time_remaining", "message", "error", "error_code", "stage_failed", "suggestions",
            "cancel_requested", "metrics", "final_accuracy", "validation_score", "training_time", "rows_total", "rows_used", "sampling", "model_version", "model_label",
            "soft_time_limit", "time_limit", "created_at", "started_at", "finished_at", "duration", "url",
        ]
        read_only_fields = fields

    def get_model_version(self, job) -> int | None:
        try:
            return job.model_version.pk
        except ModelVersion.DoesNotExist:
            return None

    def get_model_label(self, job) -> str | None:
        try:
            return job.model_version.label
        except ModelVersion.DoesNotExist:
            return None

    def get_url(self, job) -> str:
        return f"/training/jobs/{job.pk}/"


class TrainingJobDetailSerializer(TrainingJobSerializer):
    class Meta(TrainingJobSerializer.Meta):
        fields = TrainingJobSerializer.Meta.fields + ["history"]
        read_only_fields = fields


class TrainingJobCreateSerializer(serializers.Serializer):
    dataset = serializers.PrimaryKeyRelatedField(
        queryset=datasets_selectors.datasets_all(),
        error_messages={
            "does_not_exist": "Dataset {pk_value} does not exist.",
            "incorrect_type": "A dataset is given by its integer id, not {data_type}.",
            "required": "Choose the dataset to train on.",
        },
    )
    target_column = serializers.CharField(max_length=255)
    task = serializers.ChoiceField(
        choices=TrainingJob.Task.choices, required=False, allow_null=True, allow_blank=True,
        help_text="classification or regression; inferred from the target column when absent.",
    )
    algorithm = serializers.ChoiceField(
        choices=TrainingJob.Algorithm.choices,
        error_messages={"invalid_choice": '"{input}" is not an algorithm; choose one of ' + ", ".join(ALGORITHMS) + "."},
    )
    epochs = serializers.IntegerField(min_value=1, max_value=MAX_EPOCHS, default=10)
    test_size = serializers.FloatField(default=0.2, help_text="Share of rows held out for validation, in (0, 1).")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                 help_text='Model name; "<dataset>-<algorithm>" by default.')
    project = IdField(help_text="The dataset's project (the job goes there); another one is a 400. Optional.")

    def validate_dataset(self, dataset):
        # Permission before content: a dataset of another project is a 404, whatever its state.
        user = self.context.get("user")
        if user is not None:
            permissions.authorize(user, "create", dataset)
        if not datasets_selectors.dataset_is_ready(dataset):
            raise serializers.ValidationError(
                f"Dataset {dataset.pk} ({dataset.name}) is not ready: its status is {dataset.status}. "
                "Only ready (validated and profiled) datasets can be trained on.",
                code="DATASET_NOT_READY",
            )
        return dataset

    def validate_test_size(self, value):
        if not 0.0 < value < 1.0:
            raise serializers.ValidationError("Must be strictly between 0 and 1 (e.g. 0.2).")
        return value

    def validate_name(self, value):
        if value:
            try:
                validate_model_name(value)
            except Exception as exc:
                raise serializers.ValidationError(exc.messages) from None
        return value.strip()

    def validate(self, attrs):
        dataset, target = attrs["dataset"], attrs["target_column"]
        columns = list(dataset.column_names or [])
        if target not in columns:
            shown = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
            raise serializers.ValidationError(
                {"target_column": [f"{target!r} is not a column of dataset {dataset.pk}. Its columns: {shown}."]}
            )
        return attrs


class ModelVersionSerializer(serializers.ModelSerializer):
    label = serializers.CharField(read_only=True)
    dataset_name = serializers.SerializerMethodField()
    training_job = serializers.PrimaryKeyRelatedField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id", "project", "name", "version", "label", "status", "algorithm", "task", "target_column", "metrics",
            "final_accuracy", "validation_score", "feature_schema", "classes", "dropped_columns", "n_train",
            "n_test", "training_time", "dataset", "dataset_name", "training_job", "artifact_sha256",
            "artifact_size", "prediction_count", "last_prediction_at", "deployed_at", "created_at", "created_by",
        ]
        read_only_fields = fields

    def get_dataset_name(self, version) -> str | None:
        return version.dataset.name if version.dataset_id and version.dataset else None


class DeploymentSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model_version.name", read_only=True)
    model_version_number = serializers.IntegerField(source="model_version.version", read_only=True)
    previous_version_number = serializers.IntegerField(source="previous.version", read_only=True, allow_null=True)
    deployed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Deployment
        fields = ["id", "project", "model_version", "model_name", "model_version_number", "previous",
                  "previous_version_number", "action", "deployed_by", "deployed_at"]
        read_only_fields = fields


PREDICT_REQUEST = inline_serializer(
    "PredictRequest", {"instances": serializers.ListField(child=serializers.DictField(), max_length=services.MAX_PREDICTION_INSTANCES)}
)
PREDICT_RESPONSE = inline_serializer(
    "PredictResponse",
    {
        "project_id": serializers.IntegerField(),
        "model_id": serializers.IntegerField(),
        "model_name": serializers.CharField(),
        "model_version": serializers.IntegerField(),
        "predictions": serializers.ListField(),
        "probabilities": serializers.ListField(child=serializers.DictField(), required=False),
    },
)


# --- views ------------------------------------------------------------------------------------------


class TrainingJobFilters(ProjectFilters):
    status = ChoicesListField(JobStatus.values, required=False)
    dataset = IdField(help_text="Only jobs on this dataset.")


class TrainingJobViewSet(ProjectScopedMixin, mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         viewsets.GenericViewSet):
    """Training jobs of the projects you belong to: start one (201, `queued`), follow it, cancel it.

    Who may: members read (viewer); starting needs the editor role in the dataset's project (the job
    goes there); cancelling, the job's creator (editor) or a maintainer. Another project's job is a 404.
    Live progress: `training_started`, `training_progress`, `training_completed` / `training_failed`
    on the `project.<id>` and `training_job.<id>` topics of /ws/.
    """

    queryset = TrainingJob.objects.select_related("model_version")
    filters_class = TrainingJobFilters

    def get_serializer_class(self):
        if self.action == "create":
            return TrainingJobCreateSerializer
        if self.action == "list":
            return TrainingJobSerializer
        return TrainingJobDetailSerializer

    def get_queryset(self):
        queryset = self.scoped(super().get_queryset())
        if self.action == "list":
            queryset = queryset.defer("history")
            filters = self.filters()
            if "status" in filters:
                queryset = queryset.filter(status__in=filters["status"])
            if "dataset" in filters:
                queryset = queryset.filter(dataset_id=filters["dataset"])
        return queryset

    @extend_schema(request=TrainingJobCreateSerializer, responses={201: TrainingJobDetailSerializer})
    def create(self, request, *args, **kwargs):
        serializer = TrainingJobCreateSerializer(data=request.data, context={"user": request.user})
        serializer.is_valid(raise_exception=True)
        job = services.training_job_start(user=request.user, **serializer.validated_data)
        body = TrainingJobDetailSerializer(job).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": f"/api/training-jobs/{job.pk}/"})

    @extend_schema(request=None, responses=TrainingJobDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a job: a queued one at once, a running one within an epoch. 409 if it has ended.
        Its creator (editor) or a maintainer may."""
        job = self.get_object()
        try:
            job = services.training_job_cancel(user=request.user, job=job)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(TrainingJobDetailSerializer(job).data)


def _read_instances(request) -> list:
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > MAX_PREDICT_BODY:
        raise PayloadTooLarge(PREDICT_TOO_LARGE)
    try:
        data = request.data
    except RawPostDataException:  # pragma: no cover - the body was consumed elsewhere
        raise exceptions.ParseError("The request body could not be read.") from None
    if not isinstance(data, dict) or "instances" not in data:
        raise serializers.ValidationError({"instances": ['Send {"instances": [{column: value, ...}, ...]}.']})
    instances = data["instances"]
    if not isinstance(instances, list) or not instances:
        raise serializers.ValidationError({"instances": ["Must be a non-empty list of objects."]})
    if len(instances) > services.MAX_PREDICTION_INSTANCES:
        raise serializers.ValidationError(
            {"instances": [f"At most {services.MAX_PREDICTION_INSTANCES:,} instances per request; got {len(instances):,}."]}
        )
    extra = set(data) - {"instances"}
    if extra:
        raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(extra)})
    return instances


def _predict(version: ModelVersion, request) -> Response:
    from . import trainer

    instances = _read_instances(request)
    try:
        result = services.model_version_predict(version=version, instances=instances, user=request.user)
    except trainer.InvalidInputError as exc:
        errors = exc.errors[:50]
        if len(exc.errors) > 50:
            errors.append(f"... and {len(exc.errors) - 50} more problems.")
        raise serializers.ValidationError({"instances": errors}) from None
    except services.ArtifactError as exc:
        raise ModelUnavailable(str(exc)) from None
    return Response({"project_id": version.project_id, "model_id": version.pk, "model_name": version.name,
                     "model_version": version.version, **result})


def _serving_version(project: Project, name: str) -> ModelVersion:
    """The version serving `name` in a project: 404 when the project has no model of that name,
    409 when none of its versions is deployed."""
    version = services.model_version_serving_cached(project_id=project.pk, name=name)
    if version is None:
        if not selectors.model_projects_named(name, {project.pk}):
            raise exceptions.NotFound(f"Project “{project.name}” has no model named {name!r}.")
        raise ConflictError(f"No version of {name!r} is deployed in project “{project.name}”; deploy one first.")
    return version


class ModelVersionFilters(ProjectFilters):
    name = serializers.CharField(max_length=100, required=False, help_text="Only versions of this model.")
    status = ChoicesListField(ModelVersion.Status.values, required=False)


class ModelVersionViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The model registry of the projects you belong to: every version of every model, with its
    status and metrics. Model names are a project's own (two projects may each have "churn" v1).

    Deploy a version to make it the one serving its name in its project (rollback = deploy an older
    one): maintainers only. Delete a version that does not serve: its creator (editor) or a
    maintainer. Predict with a version (/api/models/<id>/predict/), with the deployed version of a
    project's name (/api/projects/<slug>/models/<name>/predict/), or by name alone
    (/api/models/by-name/<name>/predict/) when that name is unambiguous among your projects.
    """

    queryset = ModelVersion.objects.select_related("dataset", "created_by")
    serializer_class = ModelVersionSerializer
    filters_class = ModelVersionFilters

    def get_queryset(self):
        queryset = self.scoped(super().get_queryset())
        filters = self.filters()
        if "name" in filters:
            queryset = queryset.filter(name=filters["name"])
        if "status" in filters:
            queryset = queryset.filter(status__in=filters["status"])
        return queryset

    # Prediction counts: the exact figures, flushed to the database or not yet (counters.py).
    def get_object(self):
        return counters.overlay([super().get_object()])[0]

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return None if page is None else counters.overlay(page)

    @extend_schema(request=None, responses=inline_serializer(
        "DeployResult", {"model": ModelVersionSerializer(), "deployment": DeploymentSerializer(allow_null=True)}))
    @action(detail=True, methods=["post"])
    def deploy(self, request, pk=None):
        """Make this version serve its name in its project; the previously serving one goes inactive.
        Needs the maintainer role."""
        version = self.get_object()
        try:
            deployment = services.model_version_deploy(user=request.user, version=version)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        version.refresh_from_db()
        counters.overlay([version])
        return Response(
            {
                "model": ModelVersionSerializer(version).data,
                "deployment": DeploymentSerializer(deployment).data if deployment else None,
            }
        )

    @extend_schema(responses={204: OpenApiResponse(description="Deleted.")})
    def destroy(self, request, *args, **kwargs):
        """Delete a version and its artifact: its creator (editor) or a maintainer. The serving
        version is a 409 (deploy another one first)."""
        version = self.get_object()
        try:
            services.model_version_delete(user=request.user, version=version)
        except services.Conflict as exc:
            raise ConflictError(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class PredictView(APIView):
    """A prediction endpoint: the only kind a `predict`-scoped token may call. JSON is read and
    written by orjson where it gives what json gives (fast_json.py)."""

    token_scopes = ("predict",)
    parser_classes = fast_json.PARSER_CLASSES
    renderer_classes = fast_json.RENDERER_CLASSES


class ModelVersionPredictView(PredictView):
    @extend_schema(request=PREDICT_REQUEST, responses=PREDICT_RESPONSE, operation_id="models_predict_create",
                   description="Predict with this version (deployed or not). " + PREDICT_WHO)
    def post(self, request, pk: int):
        version = services.model_version_for_predict(pk)
        if version is None:
            raise Http404("No such object.")
        permissions.authorize(request.user, "view", version)  # 404 when not visible, before the body
        return _predict(version, request)


class ProjectModelPredictView(PredictView):
    @extend_schema(request=PREDICT_REQUEST, responses=PREDICT_RESPONSE,
                   description="Predict with the version serving this name in the project (by slug): 404 if the "
                               "project has no model of that name (or you may not see the project), 409 if none of "
                               "its versions is deployed. " + PREDICT_WHO)
    def post(self, request, slug: str, name: str):
        project = services.project_by_slug(slug)
        if project is None or not permissions.can_see(request.user, project):
            raise Http404("No such project.")
        return _predict(_serving_version(project, name), request)


class PredictByNameView(PredictView):
    @extend_schema(request=PREDICT_REQUEST, responses=PREDICT_RESPONSE,
                   description="Predict with the version serving a name, when the name is unambiguous among the "
                               "projects you may use (a token limited to a project: that one). 404 if none of them "
                               "has a model of that name, 400 naming the projects if several do (use "
                               "/api/projects/<slug>/models/<name>/predict/), 409 if none of its versions is "
                               "deployed. " + PREDICT_WHO)
    def post(self, request, name: str):
        projects = services.model_projects_named_cached(name, permissions.visible_project_ids(request.user))
        if not projects:
            raise exceptions.NotFound(f"No model is named {name!r} in your projects.")
        if len(projects) > 1:
            named = ", ".join(f"{p.slug} ({p.name})" for p in projects[:20])
            raise serializers.ValidationError(
                {"name": [f"Several of your projects have a model named {name!r}: {named}. Predict with "
                          f"/api/projects/<slug>/models/{name}/predict/ instead."]})
        return _predict(_serving_version(projects[0], name), request)


class DeploymentFilters(ProjectFilters):
    name = serializers.CharField(max_length=100, required=False, help_text="Only deployments of this model.")


class DeploymentViewSet(ProjectScopedMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Deployments of the projects you belong to, newest first: which version, who, when, and which
    version it replaced."""

    queryset = Deployment.objects.select_related("model_version", "previous", "deployed_by")
    serializer_class = DeploymentSerializer
    filters_class = DeploymentFilters

    def get_queryset(self):
        queryset = self.scoped(super().get_queryset())
        name = self.filters().get("name")
        if name:
            queryset = queryset.filter(Q(model_version__name=name))
        return queryset
