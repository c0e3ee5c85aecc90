"""Tables every app shares: projects and their members, the activity feed, the audit log, and the API
tokens."""

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS

# Longest description a user may give a dataset, a pipeline or an alert rule: enforced by the forms
# and serializers built from the models (a clear 400), so no event or page carries an unbounded one.
DESCRIPTION_MAX_LENGTH = 2_000


class Project(models.Model):
    """A team's space: every dataset, job, model, pipeline and job alert belongs to exactly one."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=50, unique=True)
    description = models.TextField(blank=True, max_length=DESCRIPTION_MAX_LENGTH)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    """A member's role in a project, each including the rights of the ones before it."""

    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    MAINTAINER = "maintainer", "Maintainer"


ROLE_RANK = {Role.VIEWER: 1, Role.EDITOR: 2, Role.MAINTAINER: 3}


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user__username"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_one_per_user")]

    def __str__(self):
        return f"{self.user} ({self.role}) in {self.project}"


class ProjectPreference(models.Model):
    """The project a user's pages show, remembered across sessions."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")


class AppendOnlyError(PermissionDenied):
    """A change or deletion of audit entries: the log is append-only."""


class AuditEntryQuerySet(models.QuerySet):
    """No bulk update or delete through the default manager: only the retention prune removes
    entries (`audit_prune`, through the plain base manager)."""

    def update(self, **kwargs):
        raise AppendOnlyError("The audit log is append-only: entries are never changed.")

    def delete(self):
        raise AppendOnlyError("The audit log is append-only: entries go only when AUDIT_RETENTION_DAYS passes.")

    def bulk_update(self, objs, fields, batch_size=None):
        raise AppendOnlyError("The audit log is append-only: entries are never changed.")


class AuditEntry(models.Model):
    """One write: who did what to which object, when, in which project, with a short before→after.
    Append-only (no update or delete path but the retention prune, AUDIT_RETENTION_DAYS)."""

    objects = AuditEntryQuerySet.as_manager()

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    # The name at the time: the entry outlives the user.
    username = models.CharField(max_length=150, blank=True)
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=40, db_index=True)
    object_type = models.CharField(max_length=60, blank=True)
    object_id = models.CharField(max_length=40, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    summary = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "audit entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["project", "-created_at"], name="audit_project_time")]

    def __str__(self):
        return f"{self.username or 'system'} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("The audit log is append-only: entries are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("The audit log is append-only: entries go only when AUDIT_RETENTION_DAYS passes.")


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
    # None: a system-wide line (a login, a host): staff only.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activities"

    def __str__(self):
        return self.title


class TokenScope(models.TextChoices):
    ALL = "all", "Everything the owner may do"
    PREDICT = "predict", "Predictions only"
    TELEMETRY = "telemetry", "Telemetry ingest only"


class ApiToken(AbstractAuthToken):
    """A program's key to the API and the socket (knox's token: only a SHA-512 digest of the key is
    stored, with the key's first characters to find it, and an expiry), named by its owner."""

    # An integer id in URLs and the admin, not the digest (knox's primary key).
    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    name = models.CharField(max_length=100, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # A token may be limited to one project (of its owner's) and to one kind of use.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    scope = models.CharField(max_length=16, choices=TokenScope.choices, default=TokenScope.ALL)

    class Meta:
        ordering = ["-created", "-id"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name or 'API token'} ({self.user})"
