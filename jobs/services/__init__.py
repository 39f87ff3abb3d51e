"""Every write and state transition of jobs and chunks, one module per caller.

- `jobs`: what people do to jobs (create, cancel, retry, rerun, delete);
- `studies`: scaling studies (a job's work at parallelism 1, 2, 4, …, one run at a time);
- `admission`: the one gate of every way to start work (rates and quotas, under a
  per-person lock); `quotas`: the per-person caps it checks;
- `uploads`: storing one within the quota (atomically), deleting, pruning files;
- `nodes`: draining nodes;
- `exports`: how many history exports stream at once, per person and in all;
- `errors`: the one way a service refuses (`Refused`: `Conflict`, `Rejected`, `TooMany`,
  `RateLimited`).
"""

from __future__ import annotations

from jobs.services.errors import Conflict, RateLimited, Refused, Rejected, TooMany
from jobs.services.exports import export_slot_take, export_turn_try, history_export_open
from jobs.services.jobs import (
    JobPlan,
    job_cancel,
    job_create,
    job_delete,
    job_plan,
    job_rerun,
    job_retry_failed,
)
from jobs.services.uploads import upload_create

__all__ = [
    "Conflict",
    "JobPlan",
    "RateLimited",
    "Refused",
    "Rejected",
    "TooMany",
    "export_slot_take",
    "export_turn_try",
    "history_export_open",
    "job_cancel",
    "job_create",
    "job_delete",
    "job_plan",
    "job_rerun",
    "job_retry_failed",
    "upload_create",
]
