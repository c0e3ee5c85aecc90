"""Model training and prediction with scikit-learn, independent of Django.

The Celery task calls :func:`train`; the prediction API uses :func:`load_artifact`,
:func:`check_instances` and :func:`predict`. Its parts:

- ``features``: column types, value coercion and the preprocessor (shared by training and prediction);
- ``fitting``: the training loop and its result;
- ``prediction``: artifact loading, instance checks and prediction;
- ``compiled``: the fitted preprocessor as plain numpy, the prediction fast path;
- ``errors``: the errors a user is shown.

The serialized artifact is a fitted ``sklearn.pipeline.Pipeline(preprocessor, model)``; it references
two small classes (:class:`DatetimeFeatures`, :class:`ScaledTargetRegressor`) by the path
``training.trainer``, so loading an artifact requires this package to be importable.
"""

from __future__ import annotations

from .errors import ArtifactIntegrityError, InvalidInputError, TrainingCancelled, TrainingError
from .features import DatetimeFeatures, infer_task
from .fitting import ALGORITHMS, STAGES, TASKS, ProgressUpdate, ScaledTargetRegressor, TrainingResult, train
from .prediction import check_instances, load_artifact, predict, predict_checked

__all__ = [
    "ALGORITHMS",
    "STAGES",
    "TASKS",
    "ArtifactIntegrityError",
    "DatetimeFeatures",
    "InvalidInputError",
    "ProgressUpdate",
    "ScaledTargetRegressor",
    "TrainingCancelled",
    "TrainingError",
    "TrainingResult",
    "check_instances",
    "infer_task",
    "load_artifact",
    "predict",
    "predict_checked",
    "train",
]
