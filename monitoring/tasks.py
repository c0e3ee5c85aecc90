"""Thin Celery tasks of the monitoring app. The periodic ones (beat: settings.CELERY_BEAT_SCHEDULE)
do nothing while MONITORING_ENABLED is false, except the rollup."""

from celery import shared_task
from django.conf import settings

from . import services, state


@shared_task(name="monitoring.metrics_collect", ignore_result=True)
def metrics_collect() -> bool:
    """Take the sample of the host this worker runs on, unless its collector thread just did."""
    if not settings.MONITORING_ENABLED:
        return False
    state.mark("beat")
    return services.metrics_collect(role="worker") is not None


@shared_task(name="monitoring.monitoring_check", ignore_result=True)
def monitoring_check() -> dict:
    """Service, worker, job and system-metric checks (each throttled to its interval)."""
    if not settings.MONITORING_ENABLED:
        return {}
    state.mark("beat")
    return {name: bool(result) for name, result in services.monitoring_check().items()}


@shared_task(name="monitoring.metrics_rollup", ignore_result=True)
def metrics_rollup() -> dict:
    """Per-minute averages of raw samples, then retention."""
    return services.metrics_rollup()


@shared_task(name="monitoring.anomaly_detection_run", ignore_result=True, acks_late=True)
def anomaly_detection_run(detection_id: int) -> None:
    services.anomaly_detection_run(detection_id=detection_id)


@shared_task(name="monitoring.notification_send", ignore_result=True)
def notification_send(notification_id: int) -> None:
    """Make a due notification's deliveries (its group's window has passed)."""
    services.notification_send(notification_id=notification_id)


@shared_task(name="monitoring.notification_deliver", bind=True, ignore_result=True, acks_late=True)
def notification_deliver(self, delivery_id: int) -> None:
    """One attempt of a delivery; a failed one is tried again after an exponential backoff."""
    wait = services.delivery_attempt(delivery_id=delivery_id)
    if wait is not None:
        services.delivery_enqueue(delivery_id, countdown=wait)


@shared_task(name="monitoring.notifications_sweep", ignore_result=True)
def notifications_sweep() -> dict:
    """Due groups nobody sent, and repeats of still-open alerts."""
    return services.notifications_sweep()


@shared_task(name="monitoring.telemetry_points_score", ignore_result=True)
def telemetry_points_score(project_id: int | None, series: list[dict]) -> dict:
    """Streaming anomaly detection of one ingest request's new readings ({metric_id, source_id,
    start, end, count} per series, epoch ms)."""
    return services.telemetry_points_score(project_id=project_id, series=series)


@shared_task(name="monitoring.telemetry_silent_check", ignore_result=True)
def telemetry_silent_check() -> dict:
    """Sources silent for TELEMETRY_SILENT_FACTOR × their interval alert; back ones resolve."""
    if not settings.MONITORING_ENABLED or not state.try_lock("telemetry-silent-check", 5):
        return {}
    return services.telemetry_silent_check()
