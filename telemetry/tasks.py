from celery import shared_task

from . import imports


@shared_task(name="telemetry.telemetry_import_run", ignore_result=True)
def telemetry_import_run(import_id: int) -> None:
    imports.telemetry_import_run(import_id=import_id)
