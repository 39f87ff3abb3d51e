"""The API's one translation of a refusal: REST_FRAMEWORK's EXCEPTION_HANDLER.

A service's `Refused` (jobs.services.errors) becomes its status code (400, 409, or 429 with
`Retry-After`) with its body (errors by field, jobs.protocol.ConflictBody, or `detail`);
everything else goes to DRF's own handler. Views raise and never build an error response by hand.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from jobs.services.errors import RateLimited, Refused


def refusal_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Refused):
        # As DRF does for its own errors: under ATOMIC_REQUESTS nothing half-done commits.
        set_rollback()
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, RateLimited) else {}
        return Response(exc.body(), status=exc.status_code, headers=headers)
    return exception_handler(exc, context)
