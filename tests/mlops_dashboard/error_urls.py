"""A URLconf with one view that fails while holding a service address (tests/mlops_dashboard/test_error_reports.py)."""

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.urls import path


@login_not_required
def fails(request):
    broker = settings.CELERY_BROKER_URL  # a local variable the debug page lists
    layer_hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    raise ConnectionError(f"Error connecting to {broker} ({len(layer_hosts)} hosts)")


urlpatterns = [path("fails/", fails)]
