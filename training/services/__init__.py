"""Every write of the training app, in three rooms:

- ``jobs``: start, run, cancel, reap and resend training jobs;
- ``registry``: register, deploy, roll back and delete model versions;
- ``serving``: load a version's model, predict, count predictions, mark an untrustworthy version error.

Every write checks permission first (mlops_dashboard.permissions.authorize, `user=None` being the
system), goes to the project of its parent (a job's dataset, a version's job), is recorded in the
audit log and the project's activity feed, and its events carry `project_id`.

Events go out on commit of the write they describe (publish_on_commit), so a client that reacts by
reading the API sees the new state. The public names are re-exported here: `from training.services
import training_job_start` and `services.model_version_predict(...)` work as before.
"""

from .errors import ArtifactError, Conflict
from .jobs import (
    ERROR_CODES,
    STAGE_LABELS,
    SUGGESTIONS,
    JobGone,
    ProgressRecorder,
    sampling_text,
    training_job_cancel,
    training_job_default_name,
    training_job_run,
    training_job_start,
    training_jobs_reap_stale,
    training_jobs_resend_lost,
)
from .registry import model_version_delete, model_version_deploy
from .serving import (
    MAX_PREDICTION_INSTANCES,
    MILESTONE_STEP,
    MILESTONES,
    MODEL_CACHE_SIZE,
    RATE_SLOT,
    VOLUME_INTERVAL,
    milestone_between,
    model_projects_named_cached,
    model_version_for_predict,
    model_version_load,
    model_version_mark_error,
    model_version_predict,
    model_version_record_predictions,
    model_version_serving_cached,
    prediction_counts_flush,
    predictions_per_minute,
    project_by_slug,
    project_prediction_total,
    serving_changed,
)

__all__ = [
    "ERROR_CODES",
    "MAX_PREDICTION_INSTANCES",
    "MILESTONES",
    "MILESTONE_STEP",
    "MODEL_CACHE_SIZE",
    "RATE_SLOT",
    "STAGE_LABELS",
    "SUGGESTIONS",
    "VOLUME_INTERVAL",
    "ArtifactError",
    "Conflict",
    "JobGone",
    "ProgressRecorder",
    "milestone_between",
    "model_projects_named_cached",
    "model_version_delete",
    "model_version_deploy",
    "model_version_for_predict",
    "model_version_load",
    "model_version_mark_error",
    "model_version_predict",
    "model_version_record_predictions",
    "model_version_serving_cached",
    "prediction_counts_flush",
    "predictions_per_minute",
    "project_by_slug",
    "project_prediction_total",
    "sampling_text",
    "serving_changed",
    "training_job_cancel",
    "training_job_default_name",
    "training_job_run",
    "training_job_start",
    "training_jobs_reap_stale",
    "training_jobs_resend_lost",
]
