"""Thin Celery tasks of telemetry (the periodic ones: settings.CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from . import imports, partitions, store


@shared_task(name="telemetry.telemetry_import_run", ignore_result=True)
def telemetry_import_run(import_id: int) -> None:
    imports.telemetry_import_run(import_id=import_id)


@shared_task(name="telemetry.partitions_maintain", ignore_result=True)
def partitions_maintain() -> dict:
    """Make the coming partitions, drop the expired ones (PostgreSQL); retention per resolution."""
    return partitions.partitions_maintain()


@shared_task(name="telemetry.rollups_refresh", ignore_result=True)
def rollups_refresh() -> int:
    """Recompute the minute and hour rollups of the minutes written since the last run."""
    return store.rollups_refresh_pending()
