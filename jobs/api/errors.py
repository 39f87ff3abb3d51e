"""The API's one translation of a refusal: REST_FRAMEWORK's EXCEPTION_HANDLER.

A service's `Refused` (jobs.services.errors) becomes its status code (400 or 409) with its
body (errors by field, or jobs.protocol.ConflictBody); everything else goes to DRF's own
handler. Views raise and never build an error response by hand.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

from jobs.services.errors import Refused


def refusal_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Refused):
        # As DRF does for its own errors: under ATOMIC_REQUESTS nothing half-done commits.
        set_rollback()
        return Response(exc.body(), status=exc.status_code)
    return exception_handler(exc, context)
