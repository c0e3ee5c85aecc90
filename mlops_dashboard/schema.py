"""The OpenAPI schema documents every status an operation can answer, each error with the problem
details body (api_errors.py), so that clients (and the fuzzer in tests/api) know what to expect."""

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers

from .api_errors import TITLES


class ProblemSerializer(serializers.Serializer):
    """RFC 9457 problem details, as every API error is answered."""

    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    code = serializers.CharField(required=False)
    errors = serializers.JSONField(required=False, help_text="Per field, what is wrong with it (400).")

    class Meta:
        ref_name = "Problem"


WHY = {
    400: "The request is invalid: `detail` says what, `errors` where.",
    401: "No valid credentials (a session or `Authorization: Token <key>`).",
    403: "Authenticated, but not allowed to do this.",
    404: "No such object (or not one you may see): in the path, or a project or parent named in the body.",
    409: "Valid, but the object's state does not allow it now.",
    413: "The request body is larger than the limit.",
    415: "The body's content type is not one this operation reads.",
    429: "Too many requests: wait for `Retry-After` seconds.",
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class ProblemAutoSchema(AutoSchema):
    def error_statuses(self) -> set[int]:
        statuses = {401, 403, 429}
        # Writes may name a project or a parent (a dataset, a pipeline) the caller cannot see: 404.
        if "{" in self.path or self.method in UNSAFE:
            statuses.add(404)
        if self.method in UNSAFE:
            statuses |= {400, 409}
        if self.method in {"POST", "PUT", "PATCH"}:
            statuses |= {413, 415}
        if self._has_query_parameters():
            statuses.add(400)
        # A view answering more than its path and method imply: `{"POST": {404}}`.
        statuses |= set(getattr(self.view, "extra_error_statuses", {}).get(self.method, ()))
        return statuses

    def get_auth(self):
        # The session first, as a browser (and the fuzzer) uses it; the runtime order puts the token
        # first only so that a refused token answers 401 rather than 403.
        return sorted(super().get_auth(), key=lambda requirement: "tokenAuth" in requirement)

    def get_override_parameters(self):
        parameters = super().get_override_parameters()
        filters = getattr(self.view, "filters_class", None)
        if filters is not None and self.method == "GET" and self._is_list_view():
            parameters = [*parameters, filters]
        return parameters

    def _has_query_parameters(self) -> bool:
        return any(p.get("in") == "query" for p in self._get_parameters())

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for status in sorted(self.error_statuses()):
            if str(status) not in responses:
                response = self._get_response_for_code(ProblemSerializer, str(status), media_types=["application/problem+json"])
                response["description"] = f"{TITLES.get(status, 'Error')}. {WHY[status]}"
                responses[str(status)] = response
        return responses
