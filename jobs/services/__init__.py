"""Every write and state transition of jobs and chunks, one module per caller.

- `jobs`: what people do (create, cancel, retry, rerun, delete, upload);
- `chunks`: the worker's chunk lifecycle (claim under a lease, record outcomes, leases);
- `slots`: running one execution slot in a worker process;
- `dispatch`: how many slots each job has, and the reconciler that keeps it so;
- `studies`: scaling studies (a job's work at parallelism 1, 2, 4, …, one run at a time).
"""

from __future__ import annotations

from jobs.services.jobs import (
    JobConflict,
    JobPlan,
    JobRejected,
    job_cancel,
    job_create,
    job_delete,
    job_plan,
    job_rerun,
    job_retry_failed,
    upload_create,
)

__all__ = [
    "JobConflict",
    "JobPlan",
    "JobRejected",
    "job_cancel",
    "job_create",
    "job_delete",
    "job_plan",
    "job_rerun",
    "job_retry_failed",
    "upload_create",
]
