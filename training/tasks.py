"""Thin Celery tasks of the training app: load nothing, call the service, nothing else."""

from celery import shared_task

from . import services


@shared_task(name="training.training_job_run", ignore_result=True, acks_late=True)
def training_job_run(job_id: int) -> int | None:
    """Run one training job. Enqueued on commit by services.training_job_start with the job's soft
    and hard time limits; a second delivery finds the job already claimed and does nothing."""
    version = services.training_job_run(job_id=job_id)
    return version.pk if version is not None else None


@shared_task(name="training.prediction_counts_flush", ignore_result=True)
def prediction_counts_flush() -> int:
    """Write the prediction counts kept in Redis to the database (beat, every PREDICTION_FLUSH_SECONDS)."""
    return services.prediction_counts_flush()
