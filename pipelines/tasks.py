"""Thin Celery tasks of the pipelines app: take ids, call the service, nothing else."""

from celery import shared_task

from . import services


@shared_task(name="pipelines.pipeline_run_execute", ignore_result=True, acks_late=True)
def pipeline_run_execute(run_id: int) -> None:
    """Execute one pipeline run. Enqueued by services.pipeline_runs_dispatch when the pipeline has a
    free run slot; a second delivery finds the run already claimed and does nothing."""
    services.pipeline_run_execute(run_id=run_id)


@shared_task(name="pipelines.pipeline_run_scheduled", ignore_result=True)
def pipeline_run_scheduled(pipeline_id: int) -> int | None:
    """Start a run of a pipeline from its cron schedule (a django-celery-beat PeriodicTask)."""
    run = services.pipeline_run_scheduled(pipeline_id=pipeline_id)
    return run.pk if run is not None else None


@shared_task(name="pipelines.pipeline_runs_kick", ignore_result=True)
def pipeline_runs_kick() -> int:
    """Beat's safety net: start queued runs whose pipeline has a free slot; resend lost ones."""
    return services.pipeline_runs_kick()
