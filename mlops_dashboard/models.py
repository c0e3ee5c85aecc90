"""Tables every app shares: the activity feed, and the API tokens."""

from django.conf import settings
from django.db import models
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS

# Longest description a user may give a dataset, a pipeline or an alert rule: enforced by the forms
# and serializers built from the models (a clear 400), so no event or page carries an unbounded one.
DESCRIPTION_MAX_LENGTH = 2_000


class Activity(models.Model):
    """Something a person or the system did: an upload, a job, a deploy, a login."""

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        SUCCESS = "success", "Success"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"
        CRITICAL = "critical", "Critical"

    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action_type = models.CharField(max_length=40, db_index=True)
    status = models.CharField(max_length=20, default="success")
    severity_level = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    duration = models.FloatField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activities"

    def __str__(self):
        return self.title


class ApiToken(AbstractAuthToken):
    """A program's key to the API and the socket (knox's token: only a SHA-512 digest of the key is
    stored, with the key's first characters to find it, and an expiry), named by its owner."""

    # An integer id in URLs and the admin, not the digest (knox's primary key).
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    name = models.CharField(max_length=100, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name or 'API token'} ({self.user})"
