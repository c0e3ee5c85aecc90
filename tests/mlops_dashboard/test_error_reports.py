"""Technical error pages (DEBUG=True) never show where Redis, the broker, the channel layer or the
database live, nor their passwords: not in the settings, the local variables or the exception text."""

import pytest
from django.conf import settings
from django.test import Client, override_settings

PASSWORD = "hunter2-Redis-pw"
REDIS = f"redis://:{PASSWORD}@redis.internal.example:6390/3"
BROKER = f"redis://:{PASSWORD}@broker.internal.example:6391/0"


@pytest.fixture
def leaky_settings():
    caches = {"default": {**settings.CACHES["default"], "LOCATION": REDIS}}
    layers = {"default": {**settings.CHANNEL_LAYERS["default"],
                          "CONFIG": {**settings.CHANNEL_LAYERS["default"]["CONFIG"], "hosts": [REDIS]}}}
    databases = {"default": {**settings.DATABASES["default"], "PASSWORD": "db-Pass-word-42"}}
    with override_settings(DEBUG=True, ROOT_URLCONF="tests.mlops_dashboard.error_urls", REDIS_URL=REDIS,
                           CELERY_BROKER_URL=BROKER, CACHES=caches, CHANNEL_LAYERS=layers, DATABASES=databases):
        yield


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_the_debug_page_shows_no_service_address_or_password(leaky_settings, accept):
    response = Client(raise_request_exception=False).get("/fails/", HTTP_ACCEPT=accept)
    assert response.status_code == 500
    page = response.content.decode()
    assert "ConnectionError" in page and "Traceback" in page and "error_urls.py" in page  # a real debug page
    if accept == "text/html":
        assert "layer_hosts" in page  # with the frame's local variables
    for secret in (PASSWORD, "redis.internal.example", "broker.internal.example", "db-Pass-word-42", "6390", "6391"):
        assert secret not in page, secret
    assert "REDIS_URL" in page and "CHANNEL_LAYERS" in page  # listed, with their values starred out
