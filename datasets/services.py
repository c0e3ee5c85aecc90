"""Every write about datasets and processing jobs, and the events that announce them.

Each write checks permission first (mlops_dashboard.permissions): uploads need the editor role in
the project; processing jobs take their dataset's project and need editor there; editing and
deleting a dataset or cancelling a job need its creator with the editor role, or a maintainer.
`user=None` is the system (a worker, demo data): always allowed.
"""

from __future__ import annotations

import logging
import os
import time
import uuid

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import router, transaction
from django.db.models.deletion import Collector
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from mlops_dashboard import jobs, permissions, projects
from mlops_dashboard.activity import activity_record
from mlops_dashboard.audit import audit_record, changes_summary
from mlops_dashboard.events import catalog, publish_on_commit
from mlops_dashboard.jobs import JobStatus
from mlops_dashboard.models import Project

from . import operations, profiling, validation
from .models import Dataset, ProcessingJob

logger = logging.getLogger(__name__)
Status = Dataset.Status


# --- events ---------------------------------------------------------------------------------------


def _announce(dataset: Dataset, event_type=catalog.DatasetUpdated):
    publish_on_commit(event_type(project_id=dataset.project_id, dataset_id=dataset.pk, name=dataset.name,
                                 status=dataset.status))


def summary(dataset: Dataset) -> dict:
    """What the events say about a dataset: enough for a list row or a card."""
    return {
        "rows": dataset.row_count,
        "columns": dataset.column_count,
        "status": dataset.status,
        "quality_score": dataset.quality_score,
        "target_column": dataset.target_column or None,
        "file_size": dataset.file_size,
    }


# --- create, edit, delete -------------------------------------------------------------------------


def _create_project(user, project) -> Project:
    """The project a new root dataset goes to: checked for the editor role (a Project or an id)."""
    if isinstance(project, Project):
        permissions.authorize(user, "create", project)
        return project
    if user is None:  # the system: the project given, else Default
        return Project.objects.get(pk=project) if project not in (None, "") else projects.default_project()
    return projects.project_for_create(user, project)


def _creator(user):
    return user if getattr(user, "is_authenticated", False) else None


def dataset_create_from_upload(*, user, uploaded_file, project=None, name: str = "", target_column: str = "",
                               description: str = "") -> Dataset:
    """Store the upload under a generated name, record it as `validating`, and queue validation.
    `project`: a Project or its id; missing, the only project the user may create in (else a 400)."""
    project = _create_project(user, project)
    original = os.path.basename(getattr(uploaded_file, "name", "") or "upload.csv")[:255]
    dataset = Dataset(
        project=project,
        name=(name or os.path.splitext(original)[0] or "dataset")[:200],
        description=description,
        original_filename=original,
        target_column=target_column or "",
        created_by=_creator(user),
        file_size=uploaded_file.size or 0,
    )
    dataset = _create(dataset, uploaded_file, user=user,
                      summary=f"uploaded {dataset.original_filename}, {dataset.file_size:,} bytes")
    activity_record(title=f"Dataset uploaded: {dataset.name}", action_type="upload", user=dataset.created_by,
                    description=f"{dataset.original_filename}, {dataset.file_size:,} bytes",
                    metadata={"dataset_id": dataset.pk}, project=dataset.project_id)
    return dataset


def dataset_create_from_file(*, path: str, name: str, user=None, project=None, parent: Dataset | None = None,
                             target_column: str = "", description: str = "", ingest: bool = True) -> Dataset:
    """A dataset from a file on this machine (demo data, a step's output): same path as an upload.
    Under a `parent` it goes to the parent's project (a different `project` is a 400)."""
    if parent is not None:
        project = projects.parent_project(parent, getattr(project, "pk", project))
        permissions.authorize(user, "create", parent)
    else:
        project = _create_project(user, project)
    return _dataset_from_file(path=path, name=name, project=project, user=user, created_by=_creator(user),
                              parent=parent, target_column=target_column, description=description, ingest=ingest)


class _Moved(File):
    """A file the storage moves into place (a job's output, already on the storage's disk) instead of
    copying it: Django's file system storage moves a file that has a path of its own."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _dataset_from_file(*, path: str, name: str, project: Project, user, created_by, parent=None, source_job=None,
                       target_column: str = "", description: str = "", ingest: bool = True,
                       move: bool = False) -> Dataset:
    dataset = Dataset(
        project=project, name=name[:200], description=description, original_filename=os.path.basename(path)[:255],
        target_column=target_column, created_by=created_by, parent=parent, source_job=source_job,
        file_size=os.path.getsize(path),
    )
    summary = f"output of processing job {source_job.pk}" if source_job is not None else f"from {os.path.basename(path)}"
    with open(path, "rb") as f:
        content = (_Moved if move else File)(f, name=os.path.basename(path))
        return _create(dataset, content, user=user, ingest=ingest, summary=summary)


def _create(dataset: Dataset, content, *, user, ingest: bool = True, summary: str = "") -> Dataset:
    dataset.file.save("upload.csv", content, save=False)  # upload_to generates the name
    try:
        with transaction.atomic():
            dataset.full_clean()
            dataset.save()
            audit_record(user=user, action="create", obj=dataset, summary=summary)
            _announce(dataset, catalog.DatasetCreated)
            if ingest:
                _enqueue_ingest(dataset)
    except Exception:
        default_storage.delete(dataset.file.name)
        raise
    return dataset


def _enqueue_ingest(dataset: Dataset):
    from .tasks import dataset_ingest as task

    pk = dataset.pk
    transaction.on_commit(lambda: task.delay(pk))


EDITABLE = ("name", "description", "target_column")


def dataset_update(*, user, dataset: Dataset, name: str | None = None, description: str | None = None,
                   target_column: str | None = None) -> Dataset:
    permissions.authorize(user, "change", dataset)
    before = {field: getattr(dataset, field) for field in EDITABLE}
    if target_column and dataset.column_names and target_column not in dataset.column_names:
        raise ValidationError({"target_column": f"{target_column!r} is not a column of this dataset."})
    if name is not None:
        dataset.name = name
    if description is not None:
        dataset.description = description
    if target_column is not None:
        dataset.target_column = target_column
    dataset.full_clean()
    with transaction.atomic():
        # Only the fields a user edits: a worker validating or profiling writes the others meanwhile.
        if not Dataset.objects.filter(pk=dataset.pk).update(
            name=dataset.name, description=dataset.description, target_column=dataset.target_column,
            updated_at=timezone.now(),
        ):
            raise Http404(f"Dataset {dataset.pk} was deleted.")
        dataset.refresh_from_db()
        audit_record(user=user, action="update", obj=dataset,
                     summary=changes_summary(before, {field: getattr(dataset, field) for field in EDITABLE}))
        _announce(dataset)
    return dataset


def _forbidden_cascade(user, dataset: Dataset) -> str:
    """Why the user may not delete what goes with the dataset ("" when they may): its processing jobs,
    anomaly detections... (whatever the database cascades to), each checked like a delete of its own."""
    if user is None or permissions.is_admin(user):
        return ""
    collector = Collector(using=router.db_for_write(Dataset))
    collector.collect([dataset])
    rows = [obj for objs in collector.data.values() for obj in objs]
    rows += [obj for queryset in collector.fast_deletes for obj in queryset]
    for obj in rows:
        if obj == dataset or permissions.project_id_of(obj) is None:
            continue
        if not permissions.can(user, "delete", obj):
            return (f"Deleting this dataset also deletes {obj._meta.verbose_name} {obj.pk}, which you did not "
                    f"create: {permissions.denial(user, 'delete', obj)}")
    return ""


def dataset_delete(*, user, dataset: Dataset) -> None:
    """Delete the row and, once that has committed, its stored file (signals.delete_dataset_file).
    Work on it is cancelled: its processing jobs go with it (a running one stops at its next step,
    finding its row gone), and a worker validating or profiling it stops without writing (its
    writes are guarded). What goes with it must be the user's to delete too (else 403)."""
    permissions.authorize(user, "delete", dataset)
    name, pk, project_id = dataset.name, dataset.pk, dataset.project_id
    with transaction.atomic():
        why = _forbidden_cascade(user, dataset)
        if why:
            raise PermissionDenied(why)
        active = dataset.jobs.filter(status__in=list(jobs.ACTIVE)).count()
        audit_record(user=user, action="delete", obj=dataset,
                     summary=f"{active} processing job(s) cancelled" if active else "")
        dataset.delete()
        activity_record(title=f"Dataset deleted: {name}", action_type="dataset_delete", metadata={"dataset_id": pk},
                        description=f"{active} processing job(s) cancelled." if active else "",
                        user=_creator(user), project=project_id)
        publish_on_commit(catalog.DatasetDeleted(project_id=project_id, dataset_id=pk, name=name))


def dataset_reprofile(*, user, dataset: Dataset) -> Dataset:
    """Validate and profile the stored file again (after a worker died, or with a new target)."""
    permissions.authorize(user, "change", dataset)
    if dataset.is_busy and not _is_stale(dataset):
        raise ValidationError("This dataset is being validated or profiled right now.")
    with transaction.atomic():
        Dataset.objects.filter(pk=dataset.pk).update(status=Status.VALIDATING, heartbeat_at=None, errors=[])
        dataset.refresh_from_db()
        audit_record(user=user, action="reprofile", obj=dataset)
        _announce(dataset)
        _enqueue_ingest(dataset)
    return dataset


def _is_stale(dataset: Dataset) -> bool:
    return jobs.stale(Dataset, statuses=(Status.VALIDATING, Status.PROFILING)).filter(pk=dataset.pk).exists()


# --- validation and profiling (in a worker) -------------------------------------------------------


def dataset_ingest(*, dataset_id: int) -> None:
    """Validate, then profile. Runs once per queued ingest even if the task is delivered twice."""
    now = timezone.now()
    claimed = Dataset.objects.filter(pk=dataset_id, status=Status.VALIDATING, heartbeat_at__isnull=True).update(
        heartbeat_at=now
    )
    if not claimed:
        logger.info("dataset %s: ingest already claimed or not validating; skipped", dataset_id)
        return
    with jobs.heartbeat(Dataset, dataset_id):
        try:
            dataset = Dataset.objects.get(pk=dataset_id)
            if _validate(dataset):
                _profile(dataset)
        except Exception as exc:  # never leave a dataset validating/profiling
            if not Dataset.objects.filter(pk=dataset_id).exists():  # deleted meanwhile (its file too)
                logger.info("dataset %s: deleted while it was ingested; stopped", dataset_id)
                return
            logger.exception("dataset %s: ingest failed", dataset_id)
            _mark_invalid(dataset_id, [f"Processing this file failed unexpectedly ({type(exc).__name__}). "
                                       "Try Re-profile; if it fails again, check the file."])


def _validate(dataset: Dataset) -> bool:
    result = validation.validate_csv(dataset.file.path, target_column=dataset.target_column or None)
    with transaction.atomic():
        if not _write_owned(dataset, Status.VALIDATING, encoding=result.encoding or "", delimiter=result.delimiter or "",
                            column_names=result.columns, column_count=result.column_count or None,
                            row_count=result.rows if result.ok else None, file_size=result.file_size,
                            validation_time=result.validation_time, errors=result.errors, warnings=result.warnings,
                            status=Status.PROFILING if result.ok else Status.INVALID):
            return False
        user_id = dataset.created_by_id
        publish_on_commit(
            catalog.FileValidated(
                project_id=dataset.project_id,
                status="success" if result.ok else "error",
                dataset_id=dataset.pk,
                filename=dataset.original_filename,
                rows=result.rows,
                columns=result.column_count,
                file_size=result.file_size,
                target_column=dataset.target_column or None,
                summary={"encoding": result.encoding, "delimiter": result.delimiter,
                         "column_names": result.columns[:100], "warnings": result.warnings},
                validation_time=round(result.validation_time, 4),
                error=" ".join(result.errors) if result.errors else None,
                user_id=user_id,
            )
        )
        _announce(dataset)
        activity_record(
            title=f"Dataset {'validated' if result.ok else 'rejected'}: {dataset.name}", action_type="validation",
            user=dataset.created_by, status="success" if result.ok else "error",
            severity_level="success" if result.ok else "error", duration=result.validation_time,
            description=" ".join(result.errors)[:500] if result.errors else f"{result.rows:,} rows",
            metadata={"dataset_id": dataset.pk}, project=dataset.project_id,
        )
        if not result.ok:
            publish_on_commit(catalog.DatasetProcessed(project_id=dataset.project_id, dataset_id=dataset.pk,
                                                       status=Status.INVALID,
                                                       data={"errors": result.errors}))
    return result.ok


def _profile(dataset: Dataset) -> None:
    started = time.perf_counter()
    profile = profiling.profile_csv(
        dataset.file.path, encoding=dataset.encoding, delimiter=dataset.delimiter,
        target_column=dataset.target_column or None,
    )
    assessment = profiling.quality(profile)
    preview = profiling.first_rows(dataset.file.path, encoding=dataset.encoding, delimiter=dataset.delimiter, n=50)
    with transaction.atomic():
        if not _write_owned(dataset, Status.PROFILING, profile=profile.to_json(), quality=assessment.to_json(),
                            quality_score=assessment.quality_score, preview=preview, row_count=profile.rows,
                            profiling_time=round(time.perf_counter() - started, 4), status=Status.READY):
            return
        publish_on_commit(catalog.QualityAssessment(project_id=dataset.project_id, dataset_id=dataset.pk,
                                                    quality_score=dataset.quality_score, stats=dataset.quality))
        publish_on_commit(catalog.DatasetProcessed(project_id=dataset.project_id, dataset_id=dataset.pk,
                                                   status=Status.READY, data=summary(dataset)))
        _announce(dataset)
        activity_record(title=f"Dataset ready: {dataset.name}", action_type="profiling", user=dataset.created_by,
                        duration=dataset.profiling_time, severity_level="success",
                        description=f"Quality score {dataset.quality_score:.1f}",
                        metadata={"dataset_id": dataset.pk, "quality_score": dataset.quality_score},
                        project=dataset.project_id)


def _write_owned(dataset: Dataset, while_status: str, **fields) -> bool:
    """Write the worker's own fields while the dataset is still `while_status`, then read the row back (a
    user's edit of its name, description or target meanwhile is kept). False, and nothing written,
    when it was deleted or reset meanwhile: the worker stops there."""
    if not jobs.advance(Dataset, dataset.pk, from_statuses=(while_status,), updated_at=timezone.now(), **fields):
        logger.info("dataset %s: deleted or no longer %s; its result was dropped", dataset.pk, while_status)
        return False
    dataset.refresh_from_db()
    return True


def _mark_invalid(dataset_id: int, errors: list[str]) -> None:
    with transaction.atomic():
        updated = Dataset.objects.filter(pk=dataset_id, status__in=[Status.VALIDATING, Status.PROFILING]).update(
            status=Status.INVALID, errors=errors
        )
        if updated:
            dataset = Dataset.objects.get(pk=dataset_id)
            _announce(dataset)
            publish_on_commit(catalog.DatasetProcessed(project_id=dataset.project_id, dataset_id=dataset_id,
                                                       status=Status.INVALID,
                                                       data={"errors": errors}))


# --- processing jobs --------------------------------------------------------------------------------


def processing_job_create(*, user, dataset: Dataset, operation: str, options: dict | None = None,
                          project=None) -> ProcessingJob:
    """Queue a job over a ready dataset, in the dataset's project (a different `project` is a 400)."""
    permissions.authorize(user, "create", dataset)
    project = projects.parent_project(dataset, getattr(project, "pk", project))
    if dataset.status != Status.READY:
        raise ValidationError({"dataset": f"The dataset is {dataset.status}; jobs run on ready datasets only."})
    try:
        cleaned = operations.clean_options(operation, options, columns=dataset.column_names,
                                           target_column=dataset.target_column)
    except operations.OptionsError as exc:
        raise ValidationError({"options": [f"{k}: {v}" for k, v in exc.errors.items()]}) from None
    job = ProcessingJob(project=project, dataset=dataset, operation=operation, options=cleaned,
                        created_by=_creator(user))
    job.full_clean()
    with transaction.atomic():
        job.save()
        audit_record(user=user, action="create", obj=job, summary=f"{operation} of dataset {dataset.pk}")
        _job_progress(job)
        from .tasks import processing_job_run as task

        pk = job.pk
        transaction.on_commit(lambda: task.delay(pk))
    return job


def _job_progress(job: ProcessingJob):
    publish_on_commit(catalog.JobProgress(project_id=job.project_id, job_id=job.pk, dataset_id=job.dataset_id,
                                          progress=round(job.progress, 1), status=job.status,
                                          current_step=job.current_step or job.status))


def _job_completed(job: ProcessingJob):
    publish_on_commit(catalog.JobCompleted(project_id=job.project_id, job_id=job.pk, dataset_id=job.dataset_id,
                                           status=job.status, duration=job.duration or 0.0, result=job.result,
                                           error=job.error or None))


def processing_job_cancel(*, user, job: ProcessingJob) -> ProcessingJob:
    """A queued job is cancelled at once; a running one stops at its next step."""
    permissions.authorize(user, "cancel", job)
    if job.is_terminal:
        raise ValidationError(f"The job has already ended ({job.status}).")
    with transaction.atomic():
        if jobs.finish(ProcessingJob, job.pk, status=JobStatus.CANCELLED, from_statuses=(JobStatus.QUEUED,),
                       error="Cancelled before it started.", current_step="cancelled"):
            job.refresh_from_db()
            _job_completed(job)
        else:
            ProcessingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
            job.refresh_from_db()
        audit_record(user=user, action="cancel", obj=job, summary=f"status: {job.status}")
    return job


def processing_job_run(*, job_id: int) -> None:
    if not jobs.claim(ProcessingJob, job_id, current_step="starting"):
        logger.info("processing job %s already claimed or ended; skipped", job_id)
        return
    job = ProcessingJob.objects.select_related("dataset", "project").get(pk=job_id)
    _job_progress(job)
    source = job.dataset
    written: list[str] = []

    def output_path(label: str) -> str:
        path = default_storage.path(f"datasets/{uuid.uuid4().hex}.csv")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        written.append(path)
        return path

    def report(percent: float, step: str):
        job.progress = round(percent, 1)
        job.current_step = step
        if not ProcessingJob.objects.filter(pk=job_id, status=JobStatus.RUNNING).update(
                progress=job.progress, current_step=step, heartbeat_at=timezone.now()):
            raise operations.Cancelled()  # its dataset (and so the job) was deleted, or it was reaped
        _job_progress(job)

    def progress(fraction: float, step: str):  # the operation itself is the first 60%
        report(60 * fraction, step)

    def should_stop() -> bool:  # cancelled, or deleted with its dataset
        return not ProcessingJob.objects.filter(pk=job_id, cancel_requested=False).exists()

    with jobs.heartbeat(ProcessingJob, job_id):
        try:
            outputs, result = operations.run(
                job.operation, path=source.file.path, encoding=source.encoding, delimiter=source.delimiter,
                options=job.options, target_column=source.target_column, output_path=output_path,
                progress=progress, should_stop=should_stop,
            )
            created = []
            for i, output in enumerate(outputs):
                report(60 + 40 * i / len(outputs), f"profiling the {output.label} dataset")
                if should_stop():
                    raise operations.Cancelled()
                # The worker writes the outputs (the job was authorized when it was made), in its project.
                child = _dataset_from_file(
                    path=output.path, name=f"{source.name} ({output.label})", project=job.project, user=None,
                    created_by=job.created_by, parent=source, source_job=job, target_column=source.target_column,
                    ingest=False, description=f"{job.get_operation_display()} of {source.name}.", move=True,
                )
                dataset_ingest(dataset_id=child.pk)
                child.refresh_from_db()
                created.append({"label": output.label, "dataset_id": child.pk, "rows": output.rows,
                                "status": child.status})
            _end_job(job, JobStatus.SUCCEEDED, result={**result, "outputs": created})
        except operations.Cancelled:
            _end_job(job, JobStatus.CANCELLED, error="Cancelled by a user.")
        except Exception as exc:
            logger.exception("processing job %s failed", job_id)
            _end_job(job, JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        finally:
            for path in written:  # the outputs not moved into datasets of their own (a failure, a cancel)
                if os.path.exists(path):
                    os.remove(path)


def _end_job(job: ProcessingJob, status: str, *, result=None, error: str = ""):
    fields = {"result": result, "error": error, "current_step": status}
    if status == JobStatus.SUCCEEDED:
        fields["progress"] = 100.0
    with transaction.atomic():
        if jobs.finish(ProcessingJob, job.pk, status=status, **fields):
            job.refresh_from_db()
            _job_completed(job)
            if status == JobStatus.FAILED:  # monitoring's alert (and its creator's email) at once
                transaction.on_commit(lambda: jobs.job_failed_send("processing_job", job), robust=True)
            activity_record(
                title=f"{job.get_operation_display()} job {status}: {job.dataset.name}", action_type="processing_job",
                user=job.created_by, status=status, duration=job.duration,
                severity_level={"succeeded": "success", "failed": "error"}.get(status, "warning"),
                description=job.error[:500], metadata={"job_id": job.pk, "dataset_id": job.dataset_id},
                project=job.project_id,
            )


def datasets_resend_lost(cutoff) -> int:
    """Uploads never picked up for validation and queued processing jobs whose broker message was
    lost: enqueue them again (see jobs.resend_lost)."""
    from .tasks import dataset_ingest, processing_job_run

    lost = list(Dataset.objects.filter(status=Status.VALIDATING, heartbeat_at__isnull=True, created_at__lt=cutoff)
                .values_list("pk", flat=True))
    for pk in lost:
        logger.warning("dataset %s: still waiting for validation with no message in the broker; sent again", pk)
        dataset_ingest.delay(pk)
    queued = list(ProcessingJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff)
                  .values_list("pk", flat=True))
    for pk in queued:
        logger.warning("processing job %s: still queued with no message in the broker; sent again", pk)
        processing_job_run.delay(pk)
    return len(lost) + len(queued)


def datasets_reap_stale() -> int:
    """Datasets and processing jobs whose worker died end invalid / failed (never stuck)."""
    count = 0
    for dataset in jobs.stale(Dataset, statuses=(Status.VALIDATING, Status.PROFILING)).filter(
        heartbeat_at__isnull=False
    ):
        _mark_invalid(dataset.pk, ["The worker processing this file stopped before it finished. "
                                   "Use Re-profile to process it again."])
        count += 1
    for job in jobs.stale(ProcessingJob):
        _end_job(job, JobStatus.FAILED, error="The worker running this job stopped (worker lost).")
        count += 1
    return count


# --- retention (registered in apps.py, run by mlops_dashboard.retention_prune) --------------------


def processing_jobs_prune(cutoff) -> int:
    """Finished processing jobs older than the cutoff (RETENTION_JOBS_DAYS) that no dataset came out
    of (a job that made a dataset stays: it is that dataset's lineage)."""
    from mlops_dashboard.retention import delete_in_batches

    return delete_in_batches(
        ProcessingJob.objects.filter(status__in=list(jobs.TERMINAL), outputs__isnull=True).filter(
            Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
        )
    )


def dataset_files_referenced() -> list[str]:
    return list(Dataset.objects.values_list("file", flat=True))
