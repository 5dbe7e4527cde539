"""Every API error is a JSON body: {"error": code, "detail": message, "fields": {...}?}."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from releases.approvals import NotAllowed
from releases.builds import UnknownModel
from releases.deploys import NoService
from releases.intake import BadUpload
from releases.statemachine import TransitionError
from shipping.proxy import ProxyError, ProxyUnavailable

DOMAIN_ERRORS = {
    TransitionError: (status.HTTP_409_CONFLICT, "conflict"),
    NotAllowed: (status.HTTP_403_FORBIDDEN, "not_allowed"),
    BadUpload: (status.HTTP_400_BAD_REQUEST, "bad_upload"),
    UnknownModel: (status.HTTP_400_BAD_REQUEST, "unknown_model"),
    NoService: (status.HTTP_404_NOT_FOUND, "not_found"),
    ProxyUnavailable: (status.HTTP_503_SERVICE_UNAVAILABLE, "proxy_unavailable"),
    ProxyError: (status.HTTP_502_BAD_GATEWAY, "proxy_error"),
    # Django's own limits on a request's form fields (DATA_UPLOAD_MAX_MEMORY_SIZE and friends).
    RequestDataTooBig: (status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "request_too_large"),
    TooManyFieldsSent: (status.HTTP_400_BAD_REQUEST, "too_many_fields"),
    TooManyFilesSent: (status.HTTP_400_BAD_REQUEST, "too_many_files"),
}
FIELD_LIMIT_DETAIL: dict[type[Exception], str] = {
    RequestDataTooBig: "a form field is larger than SLIPWAY_MAX_FIELDS_BYTES ({limit} bytes); files go in file parts",
}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    for kind, (code, name) in DOMAIN_ERRORS.items():
        if isinstance(exc, kind):
            detail = FIELD_LIMIT_DETAIL.get(kind, "{exc}").format(exc=exc, limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
            return Response({"error": name, "detail": detail}, status=code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    response = drf_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        summary = "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}"
                            for k, v in fields.items())
        response.data = {"error": "invalid", "detail": summary, "fields": fields}
    else:
        detail = data.get("detail", data) if isinstance(data, dict) else data
        label = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = {"error": str(label), "detail": str(detail)}
    return response


def not_found(request, exception: Http404 | None = None) -> HttpResponse:  # noqa: ANN001
    """JSON under /api/, the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "not_found", "detail": f"no such resource: {request.path}"}, status=404)
    return page_not_found(request, exception)
