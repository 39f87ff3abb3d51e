"""The one way a service refuses: `Refused` and its two kinds.

A refusal is an answer, not a failure: the person asked for something that cannot be done
now (`Conflict`: the job, study or upload is not in a state for it) or not at all as asked
(`Rejected`: its input, by field, quotas included). Services raise them; the adapters
translate them in one place each, so every refusal reads the same on every surface:

- the JSON API: `jobs.api.errors.refusal_exception_handler` (REST_FRAMEWORK's
  EXCEPTION_HANDLER) answers `status_code` with `body()`;
- the pages: `jobs.views.refusals` puts the messages beside the form's fields or in a
  message on the page it redirects to.

`RateLimited` (429 with `Retry-After`) refuses a request beyond a person's rate
(jobs.services.admission, one budget for the API and the pages); `TooMany` (also 429)
refuses what would exceed how many one person may have at once.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from jobs import protocol


class Refused(Exception):
    """Something a person asked for that the service will not do; nothing was changed."""

    status_code: ClassVar[int]

    @property
    def messages(self) -> list[str]:
        """Every reason in words, for a page that shows them as messages."""
        raise NotImplementedError

    def body(self) -> Any:
        """The API's response body (its shape in jobs.protocol)."""
        raise NotImplementedError


class Conflict(Refused):
    """The job (study, upload) is not in a state for this action. `message` says why, in
    words that the API (a 409) and the pages (a message) both show."""

    status_code = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def messages(self) -> list[str]:
        return [self.message]

    def body(self) -> protocol.ConflictBody:
        return protocol.conflict_body(self.message)


class Rejected(Refused, ValueError):
    """Invalid input (a 400). `errors` is JSON by field, each field's messages in a list;
    `params` errors are keyed by parameter (`{"params": {"stop": ["..."]}}`)."""

    status_code = 400

    def __init__(self, errors: protocol.FieldErrors) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors

    @property
    def messages(self) -> list[str]:
        return field_error_messages(self.errors)

    def body(self) -> protocol.FieldErrors:
        return self.errors


class TooMany(Rejected):
    """More of something at once than one person may have (a 429): errors by field, as a
    Rejected's, naming the limit and its setting. It passes once one of them ends."""

    status_code = 429


def field_error_messages(errors: Any) -> list[str]:
    """Every message of a FieldErrors (nested by parameter or not), in order."""
    if isinstance(errors, dict):
        return [message for value in errors.values() for message in field_error_messages(value)]
    if isinstance(errors, list):
        return [str(message) for message in errors]
    return [str(errors)]


class RateLimited(Refused):
    """More requests of one kind than a person's rate allows (a 429 whose `Retry-After` is
    `retry_after_s`). `message` names the rate and its setting; the API's body is
    `{"detail": message}`, as DRF's own throttled answers."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def messages(self) -> list[str]:
        return [self.message]

    def body(self) -> dict[str, str]:
        return {"detail": self.message}
