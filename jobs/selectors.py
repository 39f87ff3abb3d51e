"""Every read, and the one JSON shape of a job shared by the API, the pages and the sockets."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import F, FloatField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Extract, NullIf
from django.forms.utils import pretty_name
from django.urls import reverse
from django.utils import timezone

from jobs import kinds
from jobs.kinds.base import File, Params
from jobs.models import Chunk, Job, Upload


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """Staff see every job; everybody else sees only their own."""
    jobs = Job.objects.all()
    if not user.is_authenticated:
        return jobs.none()
    return jobs if user.is_staff else jobs.filter(owner=user)


def uploads_of(user: Any) -> QuerySet[Upload]:
    """A person's own uploads, newest first (staff too: uploads are private)."""
    return (
        Upload.objects.filter(owner_id=user.pk) if user.is_authenticated else Upload.objects.none()
    )


def upload_get_for_user(*, user: Any, upload_id: int) -> Upload | None:
    return uploads_of(user).filter(pk=upload_id).first()


def job_get_for_user(*, user: Any, job_id: int) -> Job | None:
    return jobs_visible_to(user).filter(pk=job_id).first()


def job_history(
    *,
    user: Any,
    q: str = "",
    status: str | None = None,
    kind: str | None = None,
    owner: Any | None = None,
    created_from: date | None = None,
    created_to: date | None = None,
    sort: str = "-created",
) -> QuerySet[Job]:
    """The jobs `user` may see, searched, filtered and sorted (history page, CSV, API).

    `q` is a job id when it is a whole number (`12` or `#12`), otherwise text looked for in
    the kind and in the parameters' JSON, ignoring case. Dates are whole days in the current
    time zone, both ends included. `sort` is a key of HISTORY_SORTS (unknown: newest first);
    jobs without a duration come last in duration and speedup orders, either direction.
    """
    jobs = jobs_visible_to(user).select_related("owner")
    if q.strip():
        jobs = _history_search(jobs, q.strip())
    if status:
        jobs = jobs.filter(status=status)
    if kind:
        jobs = jobs.filter(kind=kind)
    if owner is not None:
        jobs = jobs.filter(owner=owner)
    if created_from:
        jobs = jobs.filter(created_at__gte=_day_start(created_from))
    if created_to and created_to < date.max:
        jobs = jobs.filter(created_at__lt=_day_start(created_to + timedelta(days=1)))
    return _history_sorted(jobs, sort)


def job_as_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "params": job.params,
        "status": job.status,
        "progress": round(job.progress, 4),
        "total_chunks": job.total_chunks,
        "done_chunks": job.done_chunks,
        "failed_chunks": job.failed_chunks,
        "parallelism": job.parallelism,
        "result": job.result,
        "error": job.error,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "wall_seconds": _rounded(job.wall_seconds),
        "cpu_seconds": _rounded(job.cpu_seconds),
        "speedup": _rounded(job.speedup),
        "efficiency": _rounded(job.efficiency),
        "version": job.version,
        "result_file": (reverse("api-job-result-file", args=[job.pk]) if job.result_file else None),
    }


def chunk_as_dict(chunk: Chunk) -> dict[str, Any]:
    return {
        "index": chunk.index,
        "status": chunk.status,
        "attempts": chunk.attempts,
        "worker": chunk.worker,
        "pid": chunk.pid,
        "queued_at": _iso(chunk.queued_at),
        "started_at": _iso(chunk.started_at),
        "finished_at": _iso(chunk.finished_at),
        "cpu_seconds": _rounded(chunk.cpu_seconds),
        "error": chunk.error,
    }


def job_version(*, job_id: int) -> int | None:
    return Job.objects.filter(pk=job_id).values_list("version", flat=True).first()


def job_chunks(job: Job) -> QuerySet[Chunk]:
    return job.chunks.order_by("index").defer("spec", "result")


# The job's chunks travel in pages of at most this much JSON: daphne closes a websocket with
# 1011 on a frame over 1 MiB, and a 100,000-chunk job is ~25 MB of chunk states.
SNAPSHOT_PAGE_BYTES = 256 * 1024


def job_snapshot_pages(*, job_id: int) -> tuple[dict[str, Any], list[list[dict[str, Any]]]] | None:
    """The whole state of a job as a page or socket shows it when it (re)connects: the job,
    and its chunks in index order, cut into pages of at most SNAPSHOT_PAGE_BYTES of JSON."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    pages: list[list[dict[str, Any]]] = [[]]
    size = 0
    for chunk in job_chunks(job).iterator(chunk_size=2000):
        state = chunk_as_dict(chunk)
        cost = len(json.dumps(state)) + 1
        if pages[-1] and size + cost > SNAPSHOT_PAGE_BYTES:
            pages.append([])
            size = 0
        pages[-1].append(state)
        size += cost
    return job_as_dict(job), pages


def chunk_preview(*, job: Job, index: int) -> File | None:
    """The kind's picture of one finished chunk, if the kind draws one."""
    chunk = job.chunks.filter(index=index, status=Chunk.Status.DONE).first()
    if chunk is None:
        return None
    try:
        kind = kinds.get(job.kind)
    except kinds.UnknownKind:
        return None
    return kind.preview(job.params, chunk.spec, chunk.result)


def overview(*, user: Any, recent: int = 10, active_max: int = 100) -> dict[str, Any]:
    """Active jobs (oldest first, at most `active_max`, `active_more` counts the rest) and
    the most recently finished ones."""
    jobs = jobs_visible_to(user)
    active = jobs.filter(status__in=Job.ACTIVE_STATUSES).order_by("created_at", "id")
    finished = jobs.exclude(status__in=Job.ACTIVE_STATUSES).order_by("-finished_at", "-id")
    now = timezone.now()
    listed = list(active[:active_max])
    more = active.count() - len(listed) if len(listed) == active_max else 0
    return {
        "active": [job_as_dict(job) | job_pace(job, now=now) for job in listed],
        "active_more": more,
        "recent": [job_as_dict(job) for job in finished[:recent]],
    }


def cluster_for_user(*, user: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The cluster state as `user` may see it: processes busy with a job the person cannot
    see show `other: true` instead of its id and chunk."""
    busy = {p["job_id"] for p in state["processes"] if p.get("job_id") is not None}
    visible = set(jobs_visible_to(user).filter(pk__in=busy).values_list("pk", flat=True))
    processes = []
    for process in state["processes"]:
        job_id = process.get("job_id")
        if job_id is not None and job_id not in visible:
            process = {**process, "job_id": None, "chunk_index": None, "other": True}
        processes.append(process)
    return {**state, "processes": processes}


def job_pace(job: Job, *, now: datetime) -> dict[str, float | None]:
    """Chunks finished per second so far, and the seconds left at that pace."""
    if job.started_at is None or not job.done_chunks:
        return {"throughput": None, "eta_seconds": None}
    elapsed = max((now - job.started_at).total_seconds(), 1e-3)
    rate = job.done_chunks / elapsed
    return {
        "throughput": round(rate, 3),
        "eta_seconds": round((job.total_chunks - job.done_chunks) / rate, 1),
    }


# --- History: search, sort, compare -----------------------------------------------------------

HISTORY_SORTS: dict[str, tuple[Any, ...]] = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "-duration": (F("history_duration").desc(nulls_last=True), "-id"),
    "duration": (F("history_duration").asc(nulls_last=True), "-id"),
    "-speedup": (F("history_speedup").desc(nulls_last=True), "-id"),
    "speedup": (F("history_speedup").asc(nulls_last=True), "-id"),
}
HISTORY_DEFAULT_SORT = "-created"
# What the history table and the compare page read: not the result or error text (large).
HISTORY_COLUMNS = (
    "id",
    "kind",
    "status",
    "params",
    "parallelism",
    "total_chunks",
    "done_chunks",
    "failed_chunks",
    "created_at",
    "started_at",
    "finished_at",
    "cpu_seconds",
    "owner",
    "owner__username",
)
HISTORY_COMPARE_LIMIT = 500
_BIGINT_MAX = 2**63 - 1


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _history_search(jobs: QuerySet[Job], q: str) -> QuerySet[Job]:
    number = q.removeprefix("#")
    # A number past bigint would make PostgreSQL raise; such a number cannot be an id anyway.
    if number.isdecimal() and int(number) <= _BIGINT_MAX:
        return jobs.filter(pk=int(number))
    whole = Q(kind__icontains=q) | Q(params_text__icontains=q)
    # Or the words as the pages show a job: a kind's label ("Count primes"), a parameter's
    # form label followed by its value ("Stop 1000"), a label or a value alone.
    words = Q()
    rest = q.casefold()
    for name, label in _parameter_labels():
        found = re.search(rf"(?<!\w){re.escape(label)}\s*:?\s+([^\s·]+)", rest)
        if found is None:
            continue
        value = found.group(1)
        rest = rest[: found.start()] + " " + rest[found.end() :]
        words &= Q(params_text__iregex=rf'"{re.escape(name)}": "?{re.escape(value)}"?[,}}]')
    for word in rest.split():
        words &= _history_search_word(word.strip(":·"))
    return jobs.alias(params_text=Cast("params", TextField())).filter(whole | words)


def _parameter_labels() -> list[tuple[str, str]]:
    """(name, casefolded form label) of every kind's parameters, longest labels first."""
    labels = {
        (name, str(form_field.label or pretty_name(name)).casefold())
        for kind in kinds.all_kinds()
        for name, form_field in kind.form_class.base_fields.items()
    }
    return sorted(labels, key=lambda item: -len(item[1]))


def _history_search_word(word: str) -> Q:
    match = Q(kind__icontains=word) | Q(params_text__icontains=word)
    folded = word.casefold()
    for kind in kinds.all_kinds():
        if folded in kind.label.casefold():
            match |= Q(kind=kind.name)
    for name, label in _parameter_labels():
        if folded in label:
            match |= Q(params_text__icontains=f'"{name}":')
    return match


def _wall_seconds() -> Extract:
    """Job.wall_seconds in SQL; null until the job has started and finished."""
    return Extract(F("finished_at") - F("started_at"), "epoch", output_field=FloatField())


def _speedup(wall_seconds: Any) -> Any:
    """Job.speedup in SQL: null, like the property, when the wall time is missing or 0."""
    return F("cpu_seconds") / NullIf(wall_seconds, Value(0.0))


def _history_sorted(jobs: QuerySet[Job], sort: str) -> QuerySet[Job]:
    order = HISTORY_SORTS.get(sort, HISTORY_SORTS[HISTORY_DEFAULT_SORT])
    if sort.lstrip("-") in ("duration", "speedup"):
        # alias(), not annotate(): sort keys only, so the Job properties keep their names.
        jobs = jobs.alias(
            history_duration=_wall_seconds(), history_speedup=_speedup(F("history_duration"))
        )
    return jobs.order_by(*order)


def job_history_rows(**filters: Any) -> QuerySet[Job]:
    """job_history(**filters) with only the columns the history table shows."""
    return job_history(**filters).only(*HISTORY_COLUMNS)


HISTORY_EXPORT_COLUMNS = (
    "id",
    "kind",
    "owner",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "wall_seconds",
    "cpu_seconds",
    "speedup",
    "efficiency",
    "total_chunks",
    "done_chunks",
    "failed_chunks",
    "params",
)


def job_history_export(**filters: Any) -> QuerySet[Any]:
    """job_history(**filters) as tuples in HISTORY_EXPORT_COLUMNS order, for CSV.

    Tuples, not Job objects, and the parameters as PostgreSQL's JSON text: at 100,000 jobs
    that doubled the rows per second of the export (tests/benchmarks/history.py).
    """
    wall = _wall_seconds()
    speedup = _speedup(wall)
    return job_history(**filters).values_list(
        "id",
        "kind",
        "owner__username",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        wall,
        "cpu_seconds",
        speedup,
        speedup / NullIf(F("parallelism"), Value(0)),
        "total_chunks",
        "done_chunks",
        "failed_chunks",
        Cast("params", TextField()),
    )


def job_runs_compared(
    *, user: Any, kind: str, owner: Any | None = None, limit: int = HISTORY_COMPARE_LIMIT
) -> list[dict[str, Any]]:
    """The latest `limit` succeeded runs of `kind` that `user` may see, oldest first.

    Times stay datetimes, for templates; json_script's encoder writes them as ISO 8601.
    """
    jobs = jobs_visible_to(user).filter(
        kind=kind,
        status=Job.Status.SUCCEEDED,
        started_at__isnull=False,
        finished_at__isnull=False,
    )
    if owner is not None:
        jobs = jobs.filter(owner=owner)
    latest = (
        jobs.select_related("owner").only(*HISTORY_COLUMNS).order_by("-finished_at", "-id")[:limit]
    )
    return [
        {
            "id": job.pk,
            "url": reverse("jobs:detail", args=[job.pk]),
            "owner": job.owner.get_username(),
            "finished_at": job.finished_at,
            "wall_seconds": _rounded(job.wall_seconds),
            "cpu_seconds": _rounded(job.cpu_seconds),
            "speedup": _rounded(job.speedup),
            "efficiency": _rounded(job.efficiency),
            "parallelism": job.parallelism,
            "total_chunks": job.total_chunks,
        }
        for job in reversed(list(latest))
    ]


def job_rerun_params(job: Job) -> Params:
    """A job's stored parameters as its kind's form takes them (upload fields as ids)."""
    params = dict(job.params)
    try:
        upload_fields = kinds.get(job.kind).upload_fields()
    except kinds.UnknownKind:
        return params
    for name in upload_fields:
        if isinstance(params.get(name), Mapping):
            params[name] = params[name].get("id")
    return params
