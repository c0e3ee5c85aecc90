"""The event catalog: every event the system can send, with its fields, types and topics.

Each event is a frozen, keyword-only dataclass registered under its wire name. Constructing one
checks every field's type, and unknown fields are refused by the constructor itself, so an event
that reaches a socket always matches what `docs/events.md` (generated from this module) promises.

Topics are templates over the event's own fields: "dataset.{dataset_id}" becomes "dataset.7".
A template whose field is None is skipped; "a|b" takes the first alternative whose fields are all
set ("project.{project_id}|dashboard": a project's alert goes to its project, a system alert to all).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

Number = int | float
JSON = dict[str, Any]

# Connection-level events answer one socket; they are not sequenced, logged or replayed.
CONNECTION = "connection"

REGISTRY: dict[str, type[Event]] = {}

# Names used by earlier drafts of the API, and the event that replaces each.
RENAMED = {
    "training_complete": "training_completed",
    "training_error": "training_failed",
    "system_stats": "system_metrics",
    "model_status": "model_status_change",
    "upload_complete": "file_validated",
    "upload_error": "file_validated",
}


class EventError(TypeError):
    """An event does not match its declaration in the catalog."""


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str]
    group: ClassVar[str]
    topics: ClassVar[tuple[str, ...]]
    # Field naming the job whose progress this is: such events are coalesced per job.
    coalesce_by: ClassVar[str | None] = None
    # Progress event types this event ends (sent after any pending progress of the same job).
    closes: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _matches(value, hints[f.name]):
                raise EventError(
                    f"{self.type}.{f.name} must be {_type_name(hints[f.name])}, got {value!r}"
                )

    @classmethod
    def description(cls) -> str:
        return " ".join((cls.__doc__ or "").split())

    def payload(self) -> JSON:
        """The event's own fields; optional fields left as None are omitted."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and _is_optional(f):
                continue
            out[f.name] = value
        return out

    def topic_names(self) -> list[str]:
        names = []
        for alternatives in self.topics:
            for template in alternatives.split("|"):
                fields = [name for _, name, _, _ in _FORMATTER.parse(template) if name]
                values = {name: getattr(self, name) for name in fields}
                if any(v is None for v in values.values()):
                    continue
                names.append(template.format(**values))
                break
        return names

    def coalesce_key(self) -> tuple[str, Any] | None:
        if self.coalesce_by is None:
            return None
        return (self.type, getattr(self, self.coalesce_by))


def register(group: str, *topics: str, coalesce_by: str | None = None, closes: tuple[str, ...] = ()):
    def wrap(cls):
        cls = dataclass(frozen=True, kw_only=True)(cls)
        if not getattr(cls, "type", None) or cls.type in REGISTRY:
            raise EventError(f"{cls.__name__}: missing or duplicate event type")
        cls.group = group
        cls.topics = tuple(topics)
        cls.coalesce_by = coalesce_by
        # A closing event finds the pending progress by the closed type's own key field.
        cls.closes = tuple(closes)
        REGISTRY[cls.type] = cls
        return cls

    return wrap


def event_class(name: str) -> type[Event]:
    try:
        return REGISTRY[name]
    except KeyError:
        raise EventError(f"{name!r} is not an event in the catalog") from None


def build(event_type: str, /, **fields) -> Event:
    """Make a catalog event by name: `build("dataset_created", dataset_id=1, name="x")`."""
    return event_class(event_type)(**fields)


# --- type checking -------------------------------------------------------------------------------

_FORMATTER = __import__("string").Formatter()
_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls):
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _is_optional(f: dataclasses.Field) -> bool:
    return f.default is None


def _matches(value, hint) -> bool:
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if origin is not None:
        return {dict: "object", list: "array"}.get(origin, origin.__name__)
    return {
        int: "integer",
        float: "number",
        str: "string",
        bool: "boolean",
        dict: "object",
        list: "array",
    }.get(hint, getattr(hint, "__name__", str(hint)))


def field_docs(cls: type[Event]) -> list[tuple[str, str, bool]]:
    """(name, type, optional) for each field of an event, in declaration order."""
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        optional = _is_optional(f)
        if optional and typing.get_origin(hint) in (types.UnionType, typing.Union):
            hint = typing.Union[tuple(a for a in typing.get_args(hint) if a is not type(None))]
        rows.append((f.name, _type_name(hint), optional))
    return rows


# =================================================================================================
# Pipelines
# =================================================================================================

RunStatus = typing.Literal["queued", "running", "succeeded", "failed", "cancelled"]
PIPELINE_TOPICS = ("project.{project_id}", "pipeline.{pipeline_id}")
RUN_TOPICS = ("project.{project_id}", "pipeline.{pipeline_id}", "pipeline_run.{run_id}")


@register("Pipelines", *PIPELINE_TOPICS)
class PipelineCreated(Event):
    """A pipeline was defined."""

    type = "pipeline_created"
    project_id: int
    pipeline_id: int
    name: str


@register("Pipelines", *PIPELINE_TOPICS)
class PipelineUpdated(Event):
    """A pipeline's definition (steps, schedule, name) changed."""

    type = "pipeline_updated"
    project_id: int
    pipeline_id: int
    name: str


@register("Pipelines", *PIPELINE_TOPICS)
class PipelineDeleted(Event):
    """A pipeline was deleted."""

    type = "pipeline_deleted"
    project_id: int
    pipeline_id: int
    name: str


@register("Pipelines", *RUN_TOPICS)
class PipelineStatus(Event):
    """A pipeline run changed state."""

    type = "pipeline_status"
    project_id: int
    pipeline_id: int
    run_id: int
    status: RunStatus
    data: dict


@register("Pipelines", *RUN_TOPICS, coalesce_by="run_id")
class PipelineProgress(Event):
    """A pipeline run advanced; a long step's own progress is folded into `progress` (0-100)."""

    type = "pipeline_progress"
    project_id: int
    pipeline_id: int
    run_id: int
    progress: float
    status: RunStatus
    current_step: str
    step_index: int
    total_steps: int


@register("Pipelines", *RUN_TOPICS, closes=("pipeline_progress",))
class PipelineCompleted(Event):
    """A pipeline run ended (succeeded or cancelled); `duration` in seconds."""

    type = "pipeline_completed"
    project_id: int
    pipeline_id: int
    run_id: int
    status: RunStatus
    message: str
    duration: float


@register("Pipelines", *RUN_TOPICS, closes=("pipeline_progress",))
class PipelineFailed(Event):
    """A pipeline run failed at a step."""

    type = "pipeline_failed"
    project_id: int
    pipeline_id: int
    run_id: int
    error: str
    failed_step: str


StepStatus = typing.Literal["queued", "running", "succeeded", "failed", "skipped", "cancelled"]


@register("Pipelines", "pipeline_run.{run_id}")
class PipelineStep(Event):
    """One step of a pipeline run changed state or logged: `log` holds only the new lines;
    `output` what the step produced (dataset, model version, job ids, metric values)."""

    type = "pipeline_step"
    project_id: int
    pipeline_id: int
    run_id: int
    step_index: int
    kind: str
    status: StepStatus
    log: list
    output: dict | None = None
    error: str | None = None


# =================================================================================================
# Datasets
# =================================================================================================

DATASET_TOPICS = ("project.{project_id}", "dataset.{dataset_id}")
JobStatus = RunStatus


@register("Datasets", "user.{user_id}", coalesce_by="upload_key")
class UploadProgress(Event):
    """Bytes of an upload received so far; sent to the uploader only, a few times a second."""

    type = "upload_progress"
    filename: str
    bytes_uploaded: int
    total_bytes: int
    progress_percent: float
    upload_speed: float
    estimated_time_remaining: float
    user_id: int
    upload_key: str


@register("Datasets", "user.{user_id}", *DATASET_TOPICS)
class FileValidated(Event):
    """An uploaded file was checked: `status` success, or error with the reasons in `error`."""

    type = "file_validated"
    project_id: int
    status: typing.Literal["success", "error"]
    dataset_id: int
    filename: str
    rows: int
    columns: int
    file_size: int
    target_column: str | None
    summary: dict
    validation_time: float
    error: str | None = None
    user_id: int | None = None


@register("Datasets", *DATASET_TOPICS)
class DatasetCreated(Event):
    """A dataset was created (an upload, or a processing job's output)."""

    type = "dataset_created"
    project_id: int
    dataset_id: int
    name: str
    status: str | None = None


@register("Datasets", *DATASET_TOPICS)
class DatasetUpdated(Event):
    """A dataset changed: its status, name, description or profile."""

    type = "dataset_updated"
    project_id: int
    dataset_id: int
    name: str
    status: str | None = None


@register("Datasets", *DATASET_TOPICS)
class DatasetDeleted(Event):
    """A dataset and its stored file were deleted."""

    type = "dataset_deleted"
    project_id: int
    dataset_id: int
    name: str


@register("Datasets", *DATASET_TOPICS)
class DatasetProcessed(Event):
    """A dataset finished profiling: `status` ready (profile summary in `data`) or invalid."""

    type = "dataset_processed"
    project_id: int
    dataset_id: int
    status: str
    data: dict


@register("Datasets", *DATASET_TOPICS)
class QualityAssessment(Event):
    """A dataset's quality score (0-100), its parts and findings."""

    type = "quality_assessment"
    project_id: int
    dataset_id: int
    quality_score: float
    stats: dict


@register("Datasets", *DATASET_TOPICS, "processing_job.{job_id}", coalesce_by="job_id")
class JobProgress(Event):
    """A processing job advanced (`progress` 0-100)."""

    type = "job_progress"
    project_id: int
    job_id: int
    dataset_id: int
    progress: float
    status: JobStatus
    current_step: str


@register("Datasets", *DATASET_TOPICS, "processing_job.{job_id}", closes=("job_progress",))
class JobCompleted(Event):
    """A processing job ended: succeeded with a `result`, or failed/cancelled with an `error`."""

    type = "job_completed"
    project_id: int
    job_id: int
    dataset_id: int
    status: JobStatus
    duration: float
    result: dict | None = None
    error: str | None = None


# =================================================================================================
# Training and models
# =================================================================================================

TRAINING_TOPICS = ("project.{project_id}", "training_job.{job_id}")
TrainingStage = typing.Literal[
    "data_preparation", "feature_engineering", "model_training", "validation", "finalization"
]
ModelStatus = typing.Literal["active", "training", "error", "inactive"]


@register("Training and models", *TRAINING_TOPICS)
class TrainingStarted(Event):
    """A training job began running on a worker."""

    type = "training_started"
    project_id: int
    job_id: int
    model_name: str
    dataset_id: int
    total_epochs: int


@register("Training and models", *TRAINING_TOPICS, coalesce_by="job_id")
class TrainingProgress(Event):
    """A training job advanced: after every epoch with its real loss and validation score."""

    type = "training_progress"
    project_id: int
    job_id: int
    progress: float
    stage: TrainingStage
    current_stage: str
    estimated_time_remaining: float | None
    current_epoch: int
    total_epochs: int
    current_loss: float | None
    live_accuracy: float | None
    message: str


@register("Training and models", *TRAINING_TOPICS, closes=("training_progress",))
class TrainingCompleted(Event):
    """A training job succeeded and registered a model version. It trained on `rows_used` of the
    dataset's `rows_total` rows: all of them, or a random or stratified sample (TRAINING_MAX_ROWS)."""

    type = "training_completed"
    project_id: int
    job_id: int
    model_id: int
    final_accuracy: float
    validation_score: float
    training_time: float
    model_size: int
    total_epochs: int
    rows_used: int
    rows_total: int
    sampling: typing.Literal["all", "random", "stratified"]
    message: str


@register("Training and models", *TRAINING_TOPICS, closes=("training_progress",))
class TrainingFailed(Event):
    """A training job failed or was cancelled; `error_code` says why, `suggestions` what to try."""

    type = "training_failed"
    project_id: int
    job_id: int
    error: str
    error_code: typing.Literal[
        "INVALID_TARGET",
        "INVALID_ALGORITHM",
        "INVALID_PARAMETERS",
        "INVALID_DATA",
        "DATASET_NOT_READY",
        "MEMORY_ERROR",
        "TIMEOUT",
        "CANCELLED",
        "WORKER_LOST",
        "INTERNAL",
    ]
    stage_failed: str
    progress_when_failed: float
    suggestions: list


@register("Training and models", "project.{project_id}", "model.{model_id}")
class ModelDeployed(Event):
    """A model version became the one serving its name."""

    type = "model_deployed"
    project_id: int
    model_id: int
    model_name: str
    model_version: int
    model_accuracy: float | None
    deployment_timestamp: str
    message: str


@register("Training and models", "project.{project_id}", "model.{model_id}")
class ModelStatusChange(Event):
    """A model version's serving status changed."""

    type = "model_status_change"
    project_id: int
    model_id: int
    status: ModelStatus
    health_score: float | None
    last_prediction: str | None


@register("Training and models", "project.{project_id}")
class PredictionVolume(Event):
    """A project's prediction totals: at milestones, and at most every 10 s while traffic flows.
    `total_predictions` and `predictions_per_minute` count every model version of the project; `model_id`,
    `model_name` and `model_predictions` name the version whose traffic this is, and its own total."""

    type = "prediction_volume"
    project_id: int
    total_predictions: int
    predictions_per_minute: float
    milestone_reached: int | None
    message: str
    model_id: int | None = None
    model_name: str | None = None
    model_predictions: int | None = None


# =================================================================================================
# Monitoring
# =================================================================================================

HealthLevel = typing.Literal["healthy", "warning", "critical"]


@register("Monitoring", "dashboard")
class SystemMetrics(Event):
    """One host's resource usage, every few seconds (no project's figures: see project_metrics).
    `active_connections` counts open sockets across every ASGI process; `api_response_time_ms` and
    `ws_response_time_ms` are the last minute's p95 of API requests and of ping round trips;
    `load_average` is the 1-minute load, `network_io` bytes/s and counters, `role` worker or asgi."""

    type = "system_metrics"
    host: str
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    active_connections: int
    current_health: HealthLevel
    api_response_time_ms: float | None
    ws_response_time_ms: float | None
    load_average: float | None = None
    network_io: dict | None = None
    role: str | None = None


@register("Monitoring", "project.{project_id}")
class ProjectMetrics(Event):
    """A project's serving figures, every few seconds: `current_accuracy` of its most recently
    deployed active model version (`model`: id, name, version; None when none serves),
    `predictions_total` of all its versions and their rate `predictions_per_minute`."""

    type = "project_metrics"
    project_id: int
    current_accuracy: float | None
    predictions_per_minute: float
    predictions_total: int
    model: dict | None = None


@register("Monitoring", "dashboard")
class HealthChange(Event):
    """The system's health level changed."""

    type = "health_change"
    current_health: HealthLevel
    previous_health: HealthLevel
    reason: str
    metrics: dict
    recommended_action: str


@register("Monitoring", "project.{project_id}|dashboard")
class SystemAlert(Event):
    """An alert opened, was acknowledged, or resolved. `alert` holds id, title, message,
    alert_type, priority, source, status and actions. A job's alert goes to its project
    (`project_id`), a system alert to every socket."""

    type = "system_alert"
    alert: dict
    project_id: int | None = None


@register("Monitoring", "project.{project_id}|dashboard")
class NotificationSent(Event):
    """A notification reached a channel: the alert it was about (`alert_id`, None for a channel's
    test), the channel, and the attempt that succeeded. On the alert's topic (its project's, or
    `dashboard` for a global alert or channel)."""

    type = "notification_sent"
    notification_id: int
    kind: typing.Literal["firing", "repeat", "resolved", "test", "personal"]
    alert_id: int | None
    channel_id: int | None
    channel_name: str
    attempt: int
    project_id: int | None = None


@register("Monitoring", "project.{project_id}|dashboard")
class NotificationFailed(Event):
    """An attempt to send a notification failed: `error` without the channel URL's secrets, and
    whether it will be tried again (`retrying`, after `retry_in` seconds). Pages show a toast."""

    type = "notification_failed"
    notification_id: int
    kind: typing.Literal["firing", "repeat", "resolved", "test", "personal"]
    alert_id: int | None
    channel_id: int | None
    channel_name: str
    attempt: int
    error: str
    retrying: bool
    retry_in: float | None = None
    project_id: int | None = None


@register("Monitoring", "project.{project_id}|dashboard")
class AnomalyDetected(Event):
    """A metric value or a dataset's rows scored as anomalous. Metrics: `source` metrics, `entity` the
    host, `baseline` the series' median. Datasets: `source` dataset, `metric` isolation_forest,
    `value` the share of rows flagged, `anomaly_score` the highest row score, with `dataset_id` and
    `detection_id`. Telemetry: `source` telemetry, `entity` the source's name (`source_id` its id),
    `metric` the most deviating one, `observed_at` the reading's time (ISO 8601; the event's own
    `timestamp` is when it was published)."""

    type = "anomaly_detected"
    source: str
    entity: str
    metric: str
    value: float | None
    anomaly_score: float
    severity: typing.Literal["low", "medium", "high", "critical"]
    anomaly_id: int | None = None
    baseline: float | None = None
    dataset_id: int | None = None
    detection_id: int | None = None
    project_id: int | None = None
    source_id: int | None = None
    observed_at: str | None = None


@register("Monitoring", "project.{project_id}", coalesce_by="detection_id")
class AnomalyDetectionProgress(Event):
    """A telemetry range detection advanced (`progress` 0-100; `current_step` in words)."""

    type = "anomaly_detection_progress"
    project_id: int
    detection_id: int
    progress: float
    current_step: str
    source_id: int | None = None


@register("Monitoring", "project.{project_id}", closes=("anomaly_detection_progress",))
class AnomalyDetectionCompleted(Event):
    """A telemetry range detection ended: succeeded with `n_flagged` of `n_rows` readings flagged (the
    first 50 each sent `anomaly_detected`), or failed/cancelled with an `error`."""

    type = "anomaly_detection_completed"
    project_id: int
    detection_id: int
    status: JobStatus
    entity: str
    n_rows: int | None = None
    n_flagged: int | None = None
    duration: float | None = None
    error: str | None = None
    source_id: int | None = None


@register("Telemetry", "telemetry.{source_id}", "project.{project_id}")
class TelemetryPoints(Event):
    """New readings of one source: `points` are `[metric, epoch_ms, value]` in time order. At most one
    event per second per source per server process, carrying that second's points; cut to fit a
    frame with `truncated` true (the page then refetches the range from the series API). Sent on the
    project's topic too (`project_id` set) while someone watches the project's Telemetry page (a socket
    subscribed to `telemetry_project.<project id>`, on which nothing itself is sent)."""

    type = "telemetry_points"
    source_id: int
    source: str
    points: list
    truncated: bool = False
    project_id: int | None = None


@register("Telemetry", "user.{user_id}", "project.{project_id}", coalesce_by="import_id")
class TelemetryImportProgress(Event):
    """A CSV import of telemetry history advanced (`progress` 0-100: checking every line is the first
    half, writing the second); `rows` read and `points` stored so far."""

    type = "telemetry_import_progress"
    project_id: int
    import_id: int
    filename: str
    status: JobStatus
    progress: float
    rows: int
    points: int
    user_id: int | None = None


@register("Telemetry", "user.{user_id}", "project.{project_id}", closes=("telemetry_import_progress",))
class TelemetryImportCompleted(Event):
    """A CSV import of telemetry history ended: succeeded (`points` stored, over `start`..`end`), or
    failed with an `error` naming the first bad line (nothing stored then)."""

    type = "telemetry_import_completed"
    project_id: int
    import_id: int
    filename: str
    status: JobStatus
    rows: int
    points: int
    duration: float
    start: str | None = None
    end: str | None = None
    error: str | None = None
    user_id: int | None = None


@register("Monitoring", "dashboard")
class PerformanceMetrics(Event):
    """Resource usage for the Monitoring page's charts."""

    type = "performance_metrics"
    cpu_usage: float
    memory_usage: float
    disk_usage: float
    network_io: dict


@register("Monitoring", "dashboard")
class ChartData(Event):
    """New points for the Monitoring page's charts."""

    type = "chart_data"
    resource: dict
    network: dict
    performance: dict


@register("Monitoring", "dashboard")
class ServiceHealth(Event):
    """Status and latency of each service (database, Redis, channel layer, workers, ...)."""

    type = "service_health"
    services: list


@register("Monitoring", "dashboard")
class ComponentHealth(Event):
    """One component's status changed."""

    type = "component_health"
    component: str
    status: str
    metrics: dict


@register("Monitoring", "dashboard")
class IntegrationStatus(Event):
    """Status of the integrations (broker, result store, model serving, ...)."""

    type = "integration_status"
    integrations: list


# =================================================================================================
# Projects
# =================================================================================================


@register("Projects", "user.{user_id}")
class ProjectsChanged(Event):
    """The user's projects changed: added to or removed from one, a new role, or (staff) a project
    made, renamed or deleted. `projects` holds each as {id, name, slug, role}, by name; the user's
    open sockets already follow the new set of `project.<id>` topics."""

    type = "projects_changed"
    user_id: int
    projects: list


# =================================================================================================
# Activity
# =================================================================================================


@register("Activity", "project.{project_id}|staff")
class ActivityUpdate(Event):
    """Something happened: an upload, a job, a deploy, a login. `activity` holds id, title,
    description, user, action_type, status, severity_level, duration and metadata."""

    type = "activity_update"
    activity: dict
    project_id: int | None = None


# =================================================================================================
# Connection (one socket; not sequenced, not logged)
# =================================================================================================


@register("Connection", CONNECTION)
class Pong(Event):
    """The answer to a client's ping: its `ts` echoed, and the server's time (ms since epoch)."""

    type = "pong"
    ts: Any
    server_ts: float


@register("Connection", CONNECTION)
class Error(Event):
    """Something about the connection or the client's message is wrong. Codes: bad_message,
    unknown_type, too_large, forbidden_topic (another user's or project's topic, or an object the
    user may not view or that does not exist), too_many_topics, forbidden_scope (a `predict` or
    `telemetry` API token: closed with 4403), replay_gap (resume from the API; `latest_id` says where
    the stream now is)."""

    type = "error"
    code: str
    message: str
    latest_id: int | None = None


def is_connection_event(name: str) -> bool:
    return event_class(name).topics == (CONNECTION,)
