"""Signal handlers: Celery workers start and stop their collectors."""

import logging

logger = logging.getLogger(__name__)


def worker_ready(sender=None, **kwargs):
    """A worker is ready: start its collector, and check the services now (it just appeared)."""
    from . import collector

    if collector.start("worker"):
        collector._check_in_background()


def worker_shutdown(sender=None, **kwargs):
    """A clean shutdown is a goodbye, not a missing worker: forget it."""
    from . import collector, state

    collector.stop()
    name = getattr(sender, "hostname", None)
    if name:
        try:
            state.worker_forget(name)
        except Exception:
            logger.warning("could not forget worker %s", name, exc_info=True)


def connect_celery_signals():
    from celery.signals import worker_ready as ready_signal
    from celery.signals import worker_shutdown as shutdown_signal

    ready_signal.connect(worker_ready, dispatch_uid="monitoring.worker_ready", weak=False)
    shutdown_signal.connect(worker_shutdown, dispatch_uid="monitoring.worker_shutdown", weak=False)


def delete_scores_file(sender, instance, **kwargs):
    """A detection's score file goes with its row (also when its dataset is deleted), once committed."""
    from django.core.files.storage import default_storage
    from django.db import transaction

    name = instance.scores_file.name if instance.scores_file else ""
    if name:
        transaction.on_commit(lambda: default_storage.delete(name))


def job_failed_alert(sender, job, **kwargs):
    """A registered kind of job reached `failed` (mlops_dashboard.jobs.job_failed): alert about it."""
    from .services import job_failed_alert as alert

    alert(sender, job)
