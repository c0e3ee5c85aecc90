"""`GET /api/audit/`: the audit log, for maintainers (their projects) and staff (everything)."""

from __future__ import annotations

from django.http import Http404
from rest_framework import mixins, serializers, viewsets

from .audit import audit_entries
from .filters import FilteredListMixin, IdField, ProjectFilters
from .models import AuditEntry, Project
from .schema import ProblemAutoSchema


class AuditEntrySerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField(help_text="The user's name at the time; null: the system.")
    project = serializers.IntegerField(source="project_id", allow_null=True, read_only=True,
                                       help_text="Null: a system-wide entry (a login, a token), staff only.")

    class Meta:
        model = AuditEntry
        fields = ["id", "created_at", "user", "user_id", "project", "action", "object_type", "object_id",
                  "object_repr", "summary"]
        read_only_fields = fields

    def get_user(self, entry) -> str | None:
        return entry.username or None


class AuditFilters(ProjectFilters):
    project = IdField(help_text="Only this project's entries (you must be its maintainer, or staff).")
    user = serializers.CharField(max_length=150, required=False, help_text="A username.")
    action = serializers.CharField(max_length=40, required=False, help_text="create, update, delete, deploy, login…")
    since = serializers.DateTimeField(required=False, help_text="Entries at or after this time (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Entries before this time (ISO 8601).")

    def validate(self, data):
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise serializers.ValidationError({"until": ["Must be after `since`."]})
        return data


class AuditSchema(ProblemAutoSchema):
    def error_statuses(self) -> set[int]:
        return super().error_statuses() | {404}  # ?project= naming one you cannot see


class AuditEntryViewSet(FilteredListMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit log, newest first: every write, who made it, when, on what.

    Maintainers read their projects' entries; staff read everything, including the entries without a
    project (logins, logouts, API tokens). `?project=` narrows to one project: 404 when you cannot see
    it, 403 when you are not its maintainer."""

    serializer_class = AuditEntrySerializer
    filters_class = AuditFilters
    schema = AuditSchema()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return AuditEntry.objects.none()
        filters = self.filters()
        project = None
        if "project" in filters:
            project = Project.objects.filter(pk=filters["project"]).first()
            if project is None:
                raise Http404("No such project.")
        return audit_entries(user=self.request.user, project=project, username=filters.get("user"),
                             action=filters.get("action"), since=filters.get("since"), until=filters.get("until"))
