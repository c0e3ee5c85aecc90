from celery import shared_task

from . import services


@shared_task(name="datasets.dataset_ingest", ignore_result=True)
def dataset_ingest(dataset_id: int) -> None:
    services.dataset_ingest(dataset_id=dataset_id)


@shared_task(name="datasets.processing_job_run", ignore_result=True)
def processing_job_run(job_id: int) -> None:
    services.processing_job_run(job_id=job_id)
