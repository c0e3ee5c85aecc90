"""List filters as serializers of the query string: one declaration gives the schema's parameters
and the validation (a filter value that makes no sense is a 400 naming it, never ignored)."""

import re

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_ID = 10**18 - 1  # ids stay within the database's integer range


class ChoicesListField(serializers.Field):
    """A comma-separated list of choices: `status=queued,running`."""

    def __init__(self, choices, **kwargs):
        self.choices = list(choices)
        kwargs.setdefault("help_text", f"Comma-separated, any of: {', '.join(self.choices)}.")
        super().__init__(**kwargs)
        one = "|".join(re.escape(choice) for choice in self.choices)
        extend_schema_field({"type": "string", "pattern": f"^({one})(,({one}))*$"})(self)

    def to_internal_value(self, data):
        values = [value.strip() for value in str(data).split(",") if value.strip()]
        unknown = [value for value in values if value not in self.choices]
        if unknown:
            raise serializers.ValidationError(f"Unknown: {', '.join(unknown)[:200]}. One or more of {', '.join(self.choices)}.")
        return values

    def to_representation(self, value):
        return ",".join(value)


def IdField(**kwargs):  # noqa: N802 (a field factory, used like a field class)
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, required=False, **kwargs)


class QuerySerializer(serializers.Serializer):
    """Parameters of a query string. One given blank (`?limit=`, `?status=`) is refused like any
    other value that is not of its kind (DRF would take it as absent: the default, or no filter)."""

    def to_internal_value(self, data):
        blank = [name for name in self.fields if name in data and not str(data.get(name)).strip()]
        if blank:
            raise serializers.ValidationError({name: ["May not be blank; leave it out instead."] for name in blank})
        return super().to_internal_value(data)


def query_filters(request, filters: type[serializers.Serializer]) -> dict:
    """The validated filters of this request's query string (only those given)."""
    query = filters(data=request.query_params)
    query.is_valid(raise_exception=True)
    return {name: value for name, value in query.validated_data.items() if value not in (None, "", [])}


class FilteredListMixin:
    """A viewset whose list takes the filters of `filters_class` (the schema lists them too:
    schema.ProblemAutoSchema); `self.filters()` gives the validated ones."""

    filters_class: type[serializers.Serializer] | None = None

    def filters(self) -> dict:
        if self.filters_class is None or getattr(self, "action", None) != "list":
            return {}
        return query_filters(self.request, self.filters_class)


class ProjectFilters(QuerySerializer):
    """The filter every list of a project's rows takes: `?project=<id>`."""

    project = IdField(help_text="Only this project's rows (one of GET /api/projects/).")


class ProjectScopedMixin(FilteredListMixin):
    """A viewset over a project's rows: `scoped(queryset)` keeps what the user may read (other
    projects' rows are absent from lists and 404 on detail) and applies `?project=` on lists.
    Its `filters_class` derives from ProjectFilters."""

    filters_class = ProjectFilters
    # Rows without a project (global alert rules, system alerts) are readable by every user.
    include_global = False

    def scoped(self, queryset):
        from . import permissions

        queryset = permissions.visible(queryset, self.request.user, include_global=self.include_global)
        project = self.filters().get("project")
        if project is not None:
            queryset = queryset.filter(project_id=project)
        return queryset
