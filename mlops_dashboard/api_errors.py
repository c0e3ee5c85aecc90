"""API errors as RFC 9457 problem details: a JSON body that says what is wrong and where."""

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)

PROBLEM = "application/problem+json"
TITLES = {
    400: "Invalid request",
    401: "Authentication required",
    403: "Permission denied",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(status_code: int, detail: str, *, errors=None, code: str | None = None) -> dict:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = errors
    return body


def _detail_text(errors) -> str:
    """One readable sentence out of DRF's nested error structure."""
    if isinstance(errors, dict):
        parts = []
        for field, value in errors.items():
            text = _detail_text(value)
            parts.append(text if field in ("non_field_errors", "detail") else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(errors, list):
        return " ".join(_detail_text(e) for e in errors)
    return str(errors)


def problem_exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        # The message names the role needed (mlops_dashboard.permissions).
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response(
            problem(500, "The server failed to handle this request; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
            content_type=PROBLEM,
        )
    data = response.data
    code = getattr(exc, "default_code", None)
    if isinstance(exc, exceptions.ValidationError):
        body = problem(response.status_code, _detail_text(data), errors=data, code="invalid")
    else:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        body = problem(response.status_code, _detail_text(detail), code=codes if isinstance(codes, str) else code)
    response.data = body
    response.content_type = PROBLEM
    return response


def problem_response(status_code: int, detail: str, **kwargs) -> JsonResponse:
    return JsonResponse(problem(status_code, detail, **kwargs), status=status_code, content_type=PROBLEM)
