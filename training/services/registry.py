"""The model registry: register the version a training job produced, deploy it (or roll back to an
older one), and mark a version whose artifact cannot be trusted as error.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from mlops_dashboard import permissions
from mlops_dashboard.activity import activity_record_quietly
from mlops_dashboard.audit import audit_record
from mlops_dashboard.events import catalog, publish_on_commit

from .. import counters
from ..models import Deployment, ModelVersion, TrainingJob
from .errors import Conflict
from .serving import forget_model, model_status_event, model_version_mark_error

logger = logging.getLogger(__name__)


def model_version_register(*, job: TrainingJob, result, artifact_name: str) -> ModelVersion:
    # The dataset the job has now: the one it started with may have been deleted while it trained.
    dataset_id = TrainingJob.objects.filter(pk=job.pk).values_list("dataset_id", flat=True).first()
    # Names are a project's own: two projects may each have "churn" v1.
    latest = ModelVersion.objects.filter(project_id=job.project_id, name=job.name).aggregate(v=Max("version"))["v"] or 0
    version = ModelVersion(
        project_id=job.project_id,
        created_by_id=job.created_by_id,
        name=job.name,
        version=latest + 1,
        status=ModelVersion.Status.INACTIVE,
        algorithm=result.algorithm,
        task=result.task,
        target_column=result.target_column or job.target_column,
        metrics=result.metrics,
        final_accuracy=result.final_accuracy,
        validation_score=result.validation_score,
        feature_schema=result.feature_schema,
        classes=result.classes,
        dropped_columns=result.dropped_columns,
        n_train=result.n_train,
        n_test=result.n_test,
        training_time=result.training_time,
        dataset_id=dataset_id,
        training_job=job,
        artifact_sha256=result.artifact_sha256,
        artifact_size=result.model_size,
    )
    version.artifact.name = artifact_name
    # Field checks only: the (name, version) constraint is the database's to enforce. Checked here,
    # a version committed by a concurrent job of the same name after our Max() was a
    # ValidationError that failed the job; from the database it is an IntegrityError, and
    # _training_job_complete takes the next number.
    version.full_clean(validate_unique=False, validate_constraints=False)
    version.save()
    audit_record(user=job.created_by, action="create", obj=version,
                 summary=f"registered by training job #{job.pk}")
    return version


def _artifact_intact(version: ModelVersion) -> bool:
    digest = hashlib.sha256()
    try:
        with default_storage.open(version.artifact.name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return False
    return digest.hexdigest() == version.artifact_sha256


def model_version_deploy(*, user, version: ModelVersion) -> Deployment | None:
    """Make this version the one serving its name in its project; the one serving before goes inactive.

    `user` needs the maintainer role (None: the system). Deploying the version that already serves
    changes nothing (returns None). Deploying an older version than the serving one is recorded as
    a rollback.
    """
    permissions.authorize(user, "deploy", version)
    if not _artifact_intact(version):
        model_version_mark_error(version=version, reason="artifact missing or checksum mismatch")
        raise Conflict(f"{version.label} cannot be deployed: its artifact is missing or does not match its checksum.")
    try:
        return _deploy(version, user)
    except IntegrityError:
        # A concurrent deploy of another version of this name (in this project) committed between
        # our read of the serving version and our write (the one-active constraint): that deploy won.
        serving = _serving(version).first()
        now_serving = f"; {serving.label} is serving now" if serving is not None else ""
        raise Conflict(f"{version.label} was not deployed: another version of {version.name!r} was deployed "
                       f"at the same time{now_serving}. Deploy again to replace it.") from None


def _serving(version: ModelVersion):
    return ModelVersion.objects.filter(project_id=version.project_id, name=version.name,
                                       status=ModelVersion.Status.ACTIVE)


def _deploy(version: ModelVersion, user) -> Deployment | None:
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.status == ModelVersion.Status.ERROR:
            raise Conflict(f"{version.label} is in error and cannot be deployed; train a new version.")
        if version.status == ModelVersion.Status.ACTIVE:
            return None
        previous = _serving(version).select_for_update().first()
        now = timezone.now()
        if previous is not None:
            previous.status = ModelVersion.Status.INACTIVE
            previous.save(update_fields=["status"])
        version.status = ModelVersion.Status.ACTIVE
        version.deployed_at = now
        # The one-active constraint is the database's to enforce (see model_version_deploy).
        version.full_clean(validate_constraints=False)
        version.save(update_fields=["status", "deployed_at"])
        rollback = previous is not None and version.version < previous.version
        deployment = Deployment(
            project_id=version.project_id,
            model_version=version,
            previous=previous,
            action=Deployment.Action.ROLLBACK if rollback else Deployment.Action.DEPLOY,
            deployed_by=user if getattr(user, "is_authenticated", False) else None,
        )
        deployment.full_clean()
        deployment.save()
        verb = "rolled back to" if rollback else "deployed"
        replaced = f", replacing v{previous.version}" if previous is not None else ""
        audit_record(user=user, action="rollback" if rollback else "deploy", obj=version,
                     summary=f"serving: {f'v{previous.version}' if previous else 'none'} → v{version.version}")
        publish_on_commit(
            catalog.ModelDeployed(
                project_id=version.project_id,
                model_id=version.pk,
                model_name=version.name,
                model_version=version.version,
                model_accuracy=version.validation_score,
                deployment_timestamp=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                message=f"{version.name}: {verb} v{version.version}{replaced}.",
            )
        )
        publish_on_commit(model_status_event(version, ModelVersion.Status.ACTIVE))
        if previous is not None:
            publish_on_commit(model_status_event(previous, ModelVersion.Status.INACTIVE))
        activity_record_quietly(title=f"Model {'rolled back' if rollback else 'deployed'}: {version.label}",
                  action_type="model_rollback" if rollback else "model_deploy", user=deployment.deployed_by,
                  severity_level="success", description=f"{version.name}: {verb} v{version.version}{replaced}.",
                  metadata={"model_id": version.pk, "previous_id": previous.pk if previous else None},
                  project=version.project_id)
    return deployment


def model_version_delete(*, user, version: ModelVersion) -> None:
    """Delete a version that is not serving (and its artifact, once committed). `user`: a maintainer,
    or its creator with the editor role. The serving version is a 409: deploy another one first."""
    permissions.authorize(user, "delete", version)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
        if version is None:
            return
        if version.status == ModelVersion.Status.ACTIVE:
            raise Conflict(f"{version.label} is serving {version.name!r}; deploy another version (or roll back) "
                           "before deleting it.")
        counters.overlay([version])
        pk, created_at, label, artifact = version.pk, version.created_at, version.label, version.artifact.name
        audit_record(user=user, action="delete", obj=version, summary=f"{label} ({version.algorithm}, "
                     f"{version.prediction_count} predictions)")
        version.delete()
        activity_record_quietly(title=f"Model version deleted: {label}", action_type="model_delete",
                                user=user if getattr(user, "is_authenticated", False) else None,
                                severity_level="warning", description=f"{label} was deleted.",
                                metadata={"model_id": pk}, project=version.project_id)
        transaction.on_commit(lambda: _artifact_delete(pk, artifact))
        transaction.on_commit(lambda: counters.forget(pk, created_at))


def _artifact_delete(pk: int, name: str) -> None:
    forget_model(pk)
    if name:
        try:
            default_storage.delete(name)
        except OSError:  # retention's orphan sweep takes it later
            logger.warning("artifact %s of deleted model version %s not removed", name, pk)
