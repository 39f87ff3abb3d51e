"""Error pages: JSON under /api/ (every API error is JSON), Django's pages elsewhere."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults

API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    # Django raises SuspiciousOperation (e.g. TooManyFieldsSent, RequestDataTooBig) into here.
    if _is_api(request):
        detail = str(exception) or "Bad request."
        status = 413 if type(exception).__name__ == "RequestDataTooBig" else 400
        return JsonResponse({"detail": detail}, status=status)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": str(exception) or "Permission denied."}, status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest, *args: Any) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "Server error."}, status=500)
    return defaults.server_error(request)


BUSY_RETRY_AFTER_S = 5
BUSY_MESSAGE = (
    "This job is busy: another machine holds it and has stopped answering. "
    "Coreboard frees it within about half a minute; try again then."
)


def _try_again_later(request: HttpRequest, message: str) -> HttpResponse:
    """503 with `message`, as JSON for the API and as the 503 page otherwise."""
    if _is_api(request):
        response: HttpResponse = JsonResponse({"detail": message}, status=503)
    else:
        response = render(request, "503.html", {"message": message}, status=503)
    response["Retry-After"] = str(BUSY_RETRY_AFTER_S)
    return response


def lock_busy(request: HttpRequest) -> HttpResponse:
    """A request that timed out waiting for a job's lock (settings: COREBOARD_DB_*)."""
    return _try_again_later(request, BUSY_MESSAGE)


BROKER_UNAVAILABLE_MESSAGE = (
    "The broker (Redis) is not answering, and this needs it. Try again in a few seconds."
)


def broker_unavailable(request: HttpRequest) -> HttpResponse:
    """A request that needed Redis while it did not answer (jobs.engine.redis_clients)."""
    return _try_again_later(request, BROKER_UNAVAILABLE_MESSAGE)
