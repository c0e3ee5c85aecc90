"""Pagination of every API list: `limit` and `offset`, validated (a 400 names the bad one) and bounded."""

from django.conf import settings
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination

from .filters import QuerySerializer

MAX_OFFSET = 10**9  # far past any table here; keeps the number within the database's integer range


class PageQuery(QuerySerializer):
    limit = serializers.IntegerField(min_value=1, max_value=settings.API_MAX_PAGE_SIZE, required=False)
    offset = serializers.IntegerField(min_value=0, max_value=MAX_OFFSET, required=False)


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """DRF's limit/offset pagination, except that a `limit` or `offset` that is not a whole number in
    range is refused (DRF silently falls back to the defaults), and `limit` is at most `max_limit`."""

    max_limit = settings.API_MAX_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        query = PageQuery(data={key: request.query_params[key] for key in ("limit", "offset") if key in request.query_params})
        query.is_valid(raise_exception=True)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
                  self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
