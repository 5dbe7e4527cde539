"""Request size limits, applied before anything reads a request's body.

Only the endpoints that receive artifacts (UPLOAD_PATHS) accept large bodies; every other URL
refuses a declared Content-Length over SLIPWAY_MAX_REQUEST_BYTES with 413 before its body is
read, so no page, login form or API call can be used to fill memory or disk.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

# Paths whose view streams files into the artifact store (releases/uploads.py).
UPLOAD_PATHS = ("/api/v1/builds/",)


def upload_body_limit() -> int:
    """The largest body the upload endpoints take: a build at its limit (its files together), and the form fields."""
    return settings.SLIPWAY_MAX_UPLOAD_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def body_limit(path: str) -> int:
    return upload_body_limit() if path in UPLOAD_PATHS else settings.SLIPWAY_MAX_REQUEST_BYTES


def too_large(declared: int, limit: int) -> JsonResponse:
    return JsonResponse({"error": "request_too_large",
                         "detail": f"the request body is {declared} bytes; at most {limit} bytes are accepted here"},
                        status=413)


class RequestSizeLimit:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "bad_request", "detail": "Content-Length is not a number"}, status=400)
        limit = body_limit(request.path_info)
        if declared > limit:
            return too_large(declared, limit)
        return self.get_response(request)
