"""Debug pages and error e-mails without the addresses of our services or their passwords.

Django hides settings whose names look secret (API, TOKEN, KEY, SECRET, PASS...). Ours also hide
where Redis, the broker, the channel layer and the database live; and any text of the page that
still quotes one of those addresses or passwords (a local variable, an exception message, an
environment variable in META) is starred out as well.
"""

from __future__ import annotations

import html
import re
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.utils.regex_helper import _lazy_re_compile
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter


class ServiceSecretsFilter(SafeExceptionReporterFilter):
    hidden_settings = _lazy_re_compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE"
        "|URL|BROKER|BACKEND_URL|RESULT_BACKEND|DATABASE|CACHES|CHANNEL_LAYERS|LOCATION|HOSTS|DSN",
        flags=re.I,
    )


def _addresses(value) -> list[str]:
    """The URLs and host strings inside a setting (nested dicts and lists included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _addresses(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _addresses(v)]
    return []


def service_secrets() -> list[str]:
    """Every service address and password in the settings, longest first."""
    found = set()
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        found.update(_addresses(getattr(settings, name, None)))
    for cache in getattr(settings, "CACHES", {}).values():
        found.update(_addresses(cache.get("LOCATION")))
    for layer in getattr(settings, "CHANNEL_LAYERS", {}).values():
        found.update(_addresses((layer.get("CONFIG") or {}).get("hosts")))
    for db in getattr(settings, "DATABASES", {}).values():
        found.update(_addresses(db.get("PASSWORD")))
    for value in list(found):
        if "://" in value:
            parts = urlsplit(value)
            found.update(p for p in (parts.password, unquote(parts.password or "")) if p)
            found.add(parts.netloc)
    return sorted((s for s in found if len(s) >= 4), key=len, reverse=True)


class ServiceSecretsReporter(ExceptionReporter):
    def _scrub(self, text: str) -> str:
        stars = ServiceSecretsFilter.cleansed_substitute
        for secret in service_secrets():
            for form in {secret, html.escape(secret), html.escape(secret, quote=False)}:
                text = text.replace(form, stars)
        return text

    def get_traceback_html(self):
        return self._scrub(super().get_traceback_html())

    def get_traceback_text(self):
        return self._scrub(super().get_traceback_text())
