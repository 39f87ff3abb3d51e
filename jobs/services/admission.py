"""Admission: the one gate every way of starting work passes, with the same checks and words.

Creating a job (API or form), running one again (rerun), retrying a failed one, starting a
scaling study, and whatever starts work later (issue 23's schedules) all call `admit` in
the transaction that writes the work, after `rate_check` before any costly step:

- **rate**: the person's requests per scope (`Scope`), counted by DRF's throttle code in
  the cache (Redis) under the same keys as the API's throttles, so one budget covers the
  API and the pages; beyond it `RateLimited` (429 with `Retry-After`). Like the API's
  throttles it fails open while the cache does not answer: the quotas still hold.
- **quotas** (jobs.services.quotas): active jobs, chunks waiting or running, estimated
  CPU seconds per job and across active jobs; beyond them `Rejected` (400, `quota`).

Both are decided under a per-person lock (`pg_advisory_xact_lock`) held until the writing
transaction ends, so parallel requests of one person are counted one after another: 20 at
once never pass a quota or a rate that one at a time would not. Work Coreboard starts by
itself (a study's later runs, a schedule) passes `by=None`: quotas only, no rate.
"""

from __future__ import annotations

import logging
import math
from enum import StrEnum
from typing import Any

from django.db import OperationalError, connection, transaction
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from jobs.engine.job_state import is_lock_timeout
from jobs.services import quotas
from jobs.services.errors import RateLimited, Rejected
from jobs.services.quotas import Cost

logger = logging.getLogger(__name__)

__all__ = ["Cost", "Scope", "admit", "person_lock", "rate_check", "rate_take"]

# pg_advisory_xact_lock(LOCK_SPACE, person id): the first key keeps Coreboard's per-person
# locks apart from any other advisory lock in the database ("Core" in ASCII).
LOCK_SPACE = 0x436F7265


class Scope(StrEnum):
    """A rate's name: the API's throttle scope (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES)."""

    JOB_CREATE = "job-create"
    JOB_PREVIEW = "job-preview"
    JOB_ACTION = "job-action"
    UPLOAD = "upload"


# What each rate counts, in words, and the variable that sets it.
RATE_WORDS: dict[Scope, tuple[str, str]] = {
    Scope.JOB_CREATE: ("job creations and scaling studies", "COREBOARD_RATE_JOB_CREATE"),
    Scope.JOB_PREVIEW: ("job previews", "COREBOARD_RATE_JOB_PREVIEW"),
    Scope.JOB_ACTION: ("retries and reruns", "COREBOARD_RATE_JOB_ACTION"),
    Scope.UPLOAD: ("uploads", "COREBOARD_RATE_UPLOAD"),
}


# A person whose own attempts queue for their lock longer than COREBOARD_DB_LOCK_TIMEOUT_MS
# sent too many at once: told so (429), not that a job is busy (the middleware's 503).
QUEUED_RETRY_AFTER_S = 1
QUEUED_MESSAGE = (
    "Too many of your requests to start work at once: the ones before this are still being "
    "admitted. Try again in a second."
)


def person_lock(*people: Any) -> None:
    """Hold each person's admission lock until the current transaction ends (in id order,
    so two callers locking the same two people never wait for each other); RateLimited
    when the wait passes the sessions' lock timeout."""
    if not connection.in_atomic_block:
        raise RuntimeError("person_lock outside a transaction would hold nothing")
    ids = sorted({person.pk for person in people if person is not None})
    with connection.cursor() as cursor:
        for pk in ids:
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_SPACE, pk])
            except OperationalError as error:
                if not is_lock_timeout(error):
                    raise
                raise RateLimited(QUEUED_MESSAGE, retry_after_s=QUEUED_RETRY_AFTER_S) from None


class _PersonRate(SimpleRateThrottle):
    """DRF's rate arithmetic for one person and scope, outside a request: the cache key is
    the one DRF's ScopedRateThrottle gives an authenticated request of that scope."""

    def __init__(self, scope: Scope, person_pk: Any) -> None:
        self.scope = scope.value
        self.rate_scope = scope
        self.person_pk = person_pk
        super().__init__()
        self.num_requests: int
        self.duration: int

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.person_pk}

    def spent(self) -> bool:
        """Whether the rate is used up now, spending nothing."""
        if self.rate is None:
            return False
        self.key = self.get_cache_key(None, None)
        self.history = list(self.cache.get(self.key, []))
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return bool(len(self.history) >= self.num_requests)

    def refusal(self) -> RateLimited:
        what, variable = RATE_WORDS[self.rate_scope]
        wait = math.ceil(self.wait() or 1)
        return RateLimited(
            f"Request was throttled: at most {self.rate} {what} per person ({variable}). "
            f"Try again in {wait} s.",
            retry_after_s=max(1, wait),
        )


def _rate(person: Any, scope: Scope, *, spend: bool) -> None:
    throttle = _PersonRate(scope, person.pk)
    try:
        allowed = throttle.allow_request(None, None) if spend else not throttle.spent()  # type: ignore[arg-type]
    except (RedisError, OSError) as error:
        logger.warning("rate cache unavailable (%s); letting the request through", error)
        return
    if not allowed:
        raise throttle.refusal()


def rate_check(*, person: Any, scope: Scope) -> None:
    """RateLimited if `person` has no `scope` request left, spending none: the cheap refusal
    a service makes before its costly steps (`admit` spends one, under the lock)."""
    _rate(person, scope, spend=False)


def rate_take(*, person: Any, scope: Scope) -> None:
    """Spend one of `person`'s `scope` requests, or raise RateLimited (nothing spent).

    Under the person's lock: in the caller's transaction if there is one, else in one of
    its own."""
    with transaction.atomic():
        person_lock(person)
        _rate(person, scope, spend=True)


def admit(*, owner: Any, cost: Cost, by: Any | None, scope: Scope) -> None:
    """Let `owner` have work of `cost` more, asked for by `by` (None: Coreboard itself), or
    refuse: RateLimited (by's `scope` rate) or Rejected (the owner's quotas, by `quota`).

    Call it in the transaction that writes the work, before writing it: the locks it
    takes are held until that transaction ends, so the next admission of the same person
    counts this work.
    """
    person_lock(owner, by)
    if by is not None:
        _rate(by, scope, spend=True)
    if errors := quotas.quota_errors(owner=owner, cost=cost):
        raise Rejected({"quota": errors})
