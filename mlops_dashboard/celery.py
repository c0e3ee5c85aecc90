"""The Celery app: every long operation runs here, in any number of worker processes."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mlops_dashboard.settings")

app = Celery("mlops_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _run_below_the_web_servers(**kwargs):
    """Lower the worker's CPU priority (its pool processes inherit it): see WORKER_NICE."""
    from django.conf import settings

    increment = settings.WORKER_NICE
    if increment <= 0:
        return
    try:
        os.nice(increment)
    except OSError:  # not permitted here: run at the normal priority
        return
    # Linux shares the CPU between sessions first (autogroups), then by nice within each, so a
    # worker in a session of its own (as honcho, systemd and the tests start it) must lower its
    # session's group as well. Only then: the group of a shared session would take others with it.
    if os.getsid(0) == os.getpid():
        try:
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(increment))
        except OSError:  # no autogroups (or not Linux): the nice above is all there is
            pass
