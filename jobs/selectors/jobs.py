"""Every read. The JSON shapes they return are declared in jobs/protocol.py."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast

import redis
from django.conf import settings
from django.db import connection
from django.db.models import (
    Count,
    Exists,
    F,
    Func,
    Lookup,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    TextField,
    Window,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import RowNumber
from django.forms.utils import pretty_name
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from jobs import kinds, protocol, scaling
from jobs.engine import job_state, redis_clients
from jobs.engine import workers as worker_registry
from jobs.engine.chunks import LOCK_HOLD_MAX_MS, LOCK_HOLDER_PREFIX
from jobs.history import HISTORY_DEFAULT_SORT, HISTORY_SORTS
from jobs.kinds.base import File
from jobs.models import JOB_KIND_FOLDED, JOB_PARAMS_TEXT, Chunk, Job, JobQuerySet, Upload
from jobs.protocol import (
    ChunkState,
    ClusterState,
    JobApiState,
    JobsOverview,
    JobState,
    LiveState,
    OverviewStateMessage,
    WaitingReason,
)

logger = logging.getLogger(__name__)


def jobs_visible_to(user: Any) -> JobQuerySet:
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


def upload_get_for_user(*, user: Any, upload_id: int) -> Upload:
    """One of the person's own uploads; Http404 for anybody else's or none."""
    upload = uploads_of(user).filter(pk=upload_id).first()
    if upload is None:
        raise Http404("No such upload.")
    return upload


def job_get_for_user(*, user: Any, job_id: int) -> Job:
    """The job with this id if `user` may see it; Http404 otherwise.

    A job that does not exist and another person's job give the same 404 (pages, API and
    sockets alike), so ids tell nobody what exists.
    """
    job = jobs_visible_to(user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


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
    sweep: int | None = None,
    sweeps_collapsed: bool = False,
) -> JobQuerySet:
    """The jobs `user` may see, searched, filtered and sorted (history page, CSV, API).

    `q` is a job id when it is a whole number (`12` or `#12`), otherwise text looked for in
    the kind and in the parameters' JSON, ignoring case. Dates are whole days in the current
    time zone, both ends included. `sort` is a key of HISTORY_SORTS (unknown: newest first);
    jobs without a duration come last in duration and speedup orders, either direction.

    `sweep` keeps the jobs of that sweep. `sweeps_collapsed` (the history page) lists each
    sweep once, as its run 0, while nothing but the sweep's shared facts (kind, owner,
    dates) is filtered on: a text search or a status filter matches jobs one by one, so
    then each of a sweep's jobs that matches is listed.
    """
    jobs = jobs_visible_to(user).select_related("owner").with_timings()
    if sweep is not None:
        jobs = jobs.filter(sweep_id=sweep)
    elif sweeps_collapsed and not q.strip() and not status:
        # The sweep's first job that still exists stands for it (run 0 may be deleted);
        # the unique (sweep, sweep_index) index answers the test.
        earlier = Job.objects.filter(
            sweep_id=OuterRef("sweep_id"), sweep_index__lt=OuterRef("sweep_index")
        )
        jobs = jobs.filter(Q(sweep__isnull=True) | ~Exists(earlier))
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
    return _history_sorted(jobs, sort, status=status)


# Bytes a chunk wrote, without loading its text: the stored tail less its cut marker
# (protocol.output_cut_marker, written the same way), plus the bytes cut.
OUTPUT_BYTES_SQL = """
output_cut_bytes + octet_length(output) - CASE WHEN output_cut_bytes > 0
    THEN octet_length('[… ' || to_char(output_cut_bytes, 'FM999,999,999,999,999,999,999')
                      || E' earlier bytes cut …]\\n')
    ELSE 0 END
"""


def job_chunks(job: Job) -> QuerySet[Chunk]:
    return (
        job.chunks.order_by("index")
        .defer("spec", "result", "output")
        .annotate(output_bytes=RawSQL(OUTPUT_BYTES_SQL, ()))  # noqa: S611 (a constant)
    )


# The snapshot's window of chunk states travels in pages of at most this much JSON: daphne
# closes a websocket with 1011 on a frame over 1 MiB (failing chunks carry tracebacks).
SNAPSHOT_PAGE_BYTES = 256 * 1024


@dataclass(frozen=True)
class JobSnapshot:
    """What a job socket sends when it (re)connects (protocol.JobSnapshotMessage): compact
    whatever the job's size, the full state only of a bounded window of chunks."""

    job: JobState
    grid: str
    lanes: list[protocol.LaneState]
    peak: protocol.ChunkPeak | None
    pages: list[list[ChunkState]]


def _grid_sql() -> str:
    codes = " ".join(
        f"WHEN '{status}' THEN {code}" for code, status in enumerate(protocol.CHUNK_STATUS_CODES)
    )
    return f"""
    SELECT count(*), coalesce(max(index), -1),
           string_agg(set_byte('\\x00'::bytea, 0,
                               CASE status {codes} END
                               + CASE WHEN attempts > 1 THEN {protocol.GRID_RETRIED} ELSE 0 END),
                      ''::bytea ORDER BY index)
    FROM jobs_chunk WHERE job_id = %s
    """  # noqa: S608 (constants from jobs.protocol, no input)


GRID_SQL = _grid_sql()


def job_chunk_grid(job: Job) -> str:
    """Every chunk's status (and whether it was retried), packed one byte each
    (protocol.grid_pack), packed by PostgreSQL in index order: ~100 KB for 100,000 chunks
    instead of 100,000 rows through Python."""
    with connection.cursor() as cursor:
        cursor.execute(GRID_SQL, [job.pk])
        count, last, packed = cursor.fetchone()
    if count == job.total_chunks and last == count - 1:
        return base64.b64encode(bytes(packed or b"")).decode("ascii")
    # Indices that are not 0..n-1 (never made by job_create): placed one by one.
    rows = job.chunks.values_list("index", "status", "attempts").iterator(chunk_size=20_000)
    return protocol.grid_pack(rows, job.total_chunks)


def job_lanes(job: Job) -> list[protocol.LaneState]:
    """The worker processes that ran the job's chunks, with their last chunk's end."""
    rows = (
        job.chunks.filter(pid__isnull=False)
        .values("worker", "pid")
        .annotate(chunks=Count("id"), last_finished_at=Max("finished_at"))
        .order_by("worker", "pid")
    )
    return [
        {
            "worker": row["worker"],
            "pid": row["pid"],
            "chunks": row["chunks"],
            "last_finished_at": protocol.iso(row["last_finished_at"]),
        }
        for row in rows
    ]


def job_chunk_peak(job: Job) -> protocol.ChunkPeak | None:
    """The chunk with the largest peak resident memory so far (the first such, by index)."""
    row = (
        job.chunks.filter(peak_rss__isnull=False)
        .order_by("-peak_rss", "index")
        .values_list("index", "peak_rss")
        .first()
    )
    if row is None or row[1] is None:
        return None
    return {"index": row[0], "peak_rss": row[1]}


def job_chunk_window(job: Job) -> list[ChunkState]:
    """The chunks a page shows in full without asking: the running ones, the
    SNAPSHOT_RECENT started last (the task stream's recent bars) and the first
    SNAPSHOT_FAILING with an error (not cancelled ones), by index."""
    running = job.chunks.filter(status=Chunk.Status.RUNNING).values_list("pk", flat=True)
    recent = (
        job.chunks.filter(started_at__isnull=False)
        .order_by("-started_at")
        .values_list("pk", flat=True)[: protocol.SNAPSHOT_RECENT]
    )
    failing = (
        job.chunks.exclude(error="")
        .exclude(status=Chunk.Status.CANCELLED)
        .order_by("index")
        .values_list("pk", flat=True)[: protocol.SNAPSHOT_FAILING]
    )
    ids = {*running, *recent, *failing}
    return [protocol.chunk_state(chunk) for chunk in job_chunks(job).filter(pk__in=ids)]


def job_snapshot(*, job_id: int) -> JobSnapshot | None:
    """A job as a page or socket shows it when it (re)connects (see JobSnapshot), the
    window cut into pages of at most SNAPSHOT_PAGE_BYTES of JSON."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return None
    pages: list[list[ChunkState]] = [[]]
    size = 0
    for state in job_chunk_window(job):
        cost = len(json.dumps(state)) + 1
        if pages[-1] and size + cost > SNAPSHOT_PAGE_BYTES:
            pages.append([])
            size = 0
        pages[-1].append(state)
        size += cost
    return JobSnapshot(
        job=protocol.job_state(job),
        grid=job_chunk_grid(job),
        lanes=job_lanes(job),
        peak=job_chunk_peak(job),
        pages=pages,
    )


def job_chunk_get(*, job: Job, index: int) -> ChunkState:
    """One chunk's full state (a page asks for it when a person opens the chunk)."""
    chunk = job_chunks(job).filter(index=index).first()
    if chunk is None:
        raise Http404("No such chunk.")
    return protocol.chunk_state(chunk)


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


def overview(*, user: Any, recent: int = 10, active_max: int = 100) -> JobsOverview:
    """Active jobs (oldest first, at most `active_max`, `active_more` counts the rest) and
    the most recently finished ones."""
    jobs = jobs_visible_to(user)
    active = jobs.filter(status__in=Job.ACTIVE_STATUSES).order_by("created_at", "id")
    finished = jobs.exclude(status__in=Job.ACTIVE_STATUSES).order_by("-finished_at", "-id")
    now = timezone.now()
    listed = list(active[:active_max])
    more = active.count() - len(listed) if len(listed) == active_max else 0
    live = jobs_live(listed, now=now)
    return {
        "active": [
            protocol.active_job_state(protocol.job_state(job), live[job.pk]) for job in listed
        ],
        "active_more": more,
        "recent": [protocol.job_state(job) for job in finished[:recent]],
    }


def cluster_for_user(*, user: Any, state: Mapping[str, Any]) -> ClusterState:
    """The cluster state as `user` may see it: processes busy with a job the person cannot
    see show `other: true` instead of its id and chunk; kind modules that failed to load
    (their files and tracebacks) are shown to staff only."""
    busy = {p["job_id"] for p in state["processes"] if p.get("job_id") is not None}
    visible = set(jobs_visible_to(user).filter(pk__in=busy).values_list("pk", flat=True))
    processes = []
    for process in state["processes"]:
        job_id = process.get("job_id")
        if job_id is not None and job_id not in visible:
            process = {**process, "job_id": None, "chunk_index": None, "other": True}
        processes.append(process)
    if getattr(user, "is_staff", False):
        return cast(ClusterState, {**state, "processes": processes})
    web = {**state.get("web", {}), "kind_failures": []}
    nodes = [{**node, "kind_failures": []} for node in state.get("nodes", [])]
    return cast(ClusterState, {**state, "web": web, "nodes": nodes, "processes": processes})


def kind_failures_seen(cluster: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The kind modules that failed to load in the web process or on a worker node, one
    entry per module and error with `places` (\"web\" and node names) where it failed; as
    `cluster` (cluster_for_user's) shows them, so empty for people who are not staff."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    places = [("web", cluster.get("web", {}).get("kind_failures", []))]
    places += [(node["node"], node.get("kind_failures", [])) for node in cluster.get("nodes", [])]
    for place, failures in places:
        for failure in failures:
            key = (failure["module"], failure["error"], failure["message"])
            entry = seen.setdefault(key, {**failure, "places": []})
            entry["places"].append(place)
    return sorted(seen.values(), key=lambda entry: entry["module"])


def overview_state(
    *, user: Any, cluster_state: Mapping[str, Any], active_max: int
) -> OverviewStateMessage:
    """The overview as its page first paints it and its socket pushes it: the person's jobs
    (`overview`) and the cluster as they may see it. `cluster_state` is
    jobs.engine.workers.cluster_state(), read by the caller (the socket reads Redis off the
    database thread)."""
    return protocol.overview_state_message(
        overview(user=user, active_max=active_max),
        cluster_for_user(user=user, state=cluster_state),
    )


def job_pace(job: Job, *, now: datetime) -> LiveState:
    """Chunks finished per second so far (over its whole run once it ended, so the figure
    stays put rather than decaying with the clock), and the seconds left at that pace (the
    rest of the LiveState unknown here)."""
    live: LiveState = {
        "throughput": None,
        "eta_seconds": None,
        "processes_now": None,
        "waiting": None,
    }
    if job.started_at is None or not job.done_chunks:
        return live
    end = now if job.is_active or job.finished_at is None else job.finished_at
    elapsed = max((end - job.started_at).total_seconds(), 1e-3)
    rate = job.done_chunks / elapsed
    live["throughput"] = round(rate, 3)
    if job.is_active:
        live["eta_seconds"] = round((job.total_chunks - job.done_chunks) / rate, 1)
    return live


# --- What an active job is doing now: pace, processes, or why it waits ------------------------


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else (plural or word + 's')}"


def _in_seconds(seconds: float) -> str:
    return f"in {round(seconds)} s" if seconds >= 0.5 else "now"


def jobs_live(
    jobs: Sequence[Job],
    *,
    now: datetime | None = None,
    workers: Mapping[str, worker_registry.LiveWorker] | None = None,
    seen: Mapping[str, float] | None = None,
) -> dict[int, LiveState]:
    """What each job is doing now, read from PostgreSQL and the worker registry:
    `throughput` (chunks/s so far), `eta_seconds`, `processes_now` (live worker processes
    that have its kind) and `waiting`: null while it progresses, else why it does not,
    `{"reason", "text", "seconds"}`, in place of an ETA (then `eta_seconds` is null).

    Reasons, all that apply, in this order: `lock_holder_silent` (a worker process holds the
    job's row lock inside a transaction and has not spoken for a while: frozen or cut off;
    PostgreSQL ends its transaction within LOCK_HOLD_MAX_MS), `no_worker_with_kind` (no
    live worker has the
    job's kind: it waits, nothing fails), `lost_leases` (chunks leased to processes that
    stopped renewing them: back to pending when the lease expires), `retry_backoff` (every
    chunk left waits for its retry), `queued` (its slots wait for a free worker process; the
    text says which jobs hold the processes: the owner's own by number, also in `held_by`,
    other people's only counted).
    `seconds`: until the first of them changes by itself, when known. Four queries and
    one Redis read, whatever the number of jobs; ended jobs cost nothing.
    """
    now = now or timezone.now()
    live = {job.pk: job_pace(job, now=now) for job in jobs}
    active = [job for job in jobs if job.is_active]
    if not active:
        return live
    # `workers` (workers.live_workers) and `seen` (workers.workers_seen) are read from
    # the registry unless given.
    try:
        if workers is None:
            workers = worker_registry.live_workers()
        if seen is None:
            seen = worker_registry.workers_seen()
    except redis.RedisError:
        logger.warning("worker registry unreadable; job states without waiting reasons")
        workers, seen = None, {}
    ids = [job.pk for job in active]
    # A lease is renewed every heartbeat; one silent for LOST_AFTER_S belongs to a lost
    # process.
    silent = now + timedelta(
        seconds=max(settings.COREBOARD_LEASE_MS / 1000 - worker_registry.LOST_AFTER_S, 0)
    )
    due = Q(retry_at__isnull=True) | Q(retry_at__lte=now)
    pending = Q(status=Chunk.Status.PENDING)
    counts = {
        row["job_id"]: row
        for row in Chunk.objects.filter(
            job_id__in=ids, status__in=(Chunk.Status.PENDING, Chunk.Status.RUNNING)
        )
        .order_by()
        .values("job_id")
        .annotate(
            fresh=Count("id", filter=Q(status=Chunk.Status.RUNNING, lease_expires_at__gte=silent)),
            claimable=Count("id", filter=pending & due),
            backoff=Count("id", filter=pending & Q(retry_at__gt=now)),
            next_retry=Min("retry_at", filter=pending & Q(retry_at__gt=now)),
        )
    }
    lost: dict[int, dict[str, list[Any]]] = {}
    for row in (
        Chunk.objects.filter(
            job_id__in=ids, status=Chunk.Status.RUNNING, lease_expires_at__lt=silent
        )
        .order_by()
        .values("job_id", "lease_owner")
        .annotate(n=Count("id"), until=Max("lease_expires_at"))
    ):
        node = worker_registry.process_node(row["lease_owner"])
        entry = lost.setdefault(row["job_id"], {}).setdefault(node, [0, row["until"]])
        entry[0] += row["n"]
        entry[1] = max(entry[1], row["until"])
    holders: list[_Holder] | None = None
    silent_holders = _silent_lock_holders(ids)
    for job in active:
        row = counts.get(job.pk, {"fresh": 0, "claimable": 0, "backoff": 0, "next_retry": None})
        capacity = None if workers is None else worker_registry.kind_capacity(workers, job.kind)
        live[job.pk]["processes_now"] = capacity
        parts: list[tuple[WaitingReason, str, float | None]] = []
        held_by: list[int] = []
        if job.pk in silent_holders:
            left = silent_holders[job.pk]
            parts.append(
                (
                    "lock_holder_silent",
                    "A worker process holding this job's lock is not answering; "
                    f"the lock is released {_in_seconds(left)}",
                    left,
                )
            )
        if row["fresh"] and not parts:
            continue
        # The job progresses but for the silent lock holder: the other reasons do not apply.
        if not row["fresh"]:
            if capacity == 0:
                parts.append(
                    (
                        "no_worker_with_kind",
                        f"Waiting: no live worker has the kind '{job.kind}'",
                        None,
                    )
                )
            for node, (count, until) in sorted(lost.get(job.pk, {}).items()):
                left = max((until - now).total_seconds(), 0.0)
                parts.append(
                    (
                        "lost_leases",
                        f"{_plural(count, 'chunk')} on {_lost_node_name(node, seen, now)}, "
                        f"back to pending {_in_seconds(left)}",
                        left,
                    )
                )
            if row["backoff"] and not row["claimable"] and row["next_retry"] is not None:
                left = max((row["next_retry"] - now).total_seconds(), 0.0)
                parts.append(
                    (
                        "retry_backoff",
                        f"{_plural(row['backoff'], 'chunk')} waiting to retry {_in_seconds(left)}",
                        left,
                    )
                )
            if row["claimable"] and capacity:
                if holders is None:
                    holders = _process_holders(silent)
                text, held_by = _held_by_text(job, holders, capacity)
                parts.append(("queued", text, None))
        if parts:
            times = [seconds for _, _, seconds in parts if seconds is not None]
            live[job.pk]["waiting"] = {
                "reason": parts[0][0],
                "text": "; ".join(text for _, text, _ in parts),
                "seconds": round(min(times), 1) if times else None,
                "held_by": held_by,
            }
            live[job.pk]["eta_seconds"] = None
    return live


# A worker transaction sits idle between its statements for milliseconds; one idle this
# long while holding a job's lock belongs to a worker that froze or was cut off.
SILENT_HOLDER_S = 0.25


def _silent_lock_holders(job_ids: list[int]) -> dict[int, float]:
    """The jobs among `job_ids` whose row lock a silent worker transaction holds, and the
    seconds until PostgreSQL ends that transaction (jobs.engine.chunks names the job it
    locks in application_name)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT substr(application_name, %(skip)s)::bigint AS job_id,
                   max(extract(epoch FROM clock_timestamp() - state_change)) AS idle_s
            FROM pg_stat_activity
            WHERE state LIKE 'idle in transaction%%'
              AND application_name LIKE %(prefix)s
              AND state_change < clock_timestamp() - make_interval(secs => %(silent)s)
            GROUP BY 1
            """,
            {
                "skip": len(LOCK_HOLDER_PREFIX) + 1,
                "prefix": f"{LOCK_HOLDER_PREFIX}%",
                "silent": SILENT_HOLDER_S,
            },
        )
        rows = cursor.fetchall()
    wanted = set(job_ids)
    return {
        job_id: max(LOCK_HOLD_MAX_MS / 1000 - float(idle), 0.0)
        for job_id, idle in rows
        if job_id in wanted
    }


def job_live(job: Job, *, now: datetime | None = None) -> LiveState:
    """jobs_live for one job."""
    return jobs_live([job], now=now)[job.pk]


def job_live_by_id(*, job_id: int) -> LiveState | None:
    """job_live of the job with this id (None when it is gone)."""
    job = Job.objects.filter(pk=job_id).first()
    return None if job is None else job_live(job)


def job_version_and_live(*, job_id: int) -> tuple[int, LiveState] | None:
    """The job's version and job_live, from one read of its row (None when it is gone):
    what a job page's socket checks on each beat."""
    job = Job.objects.filter(pk=job_id).first()
    return None if job is None else (job.version, job_live(job))


def jobs_code_ran(jobs: Sequence[Job]) -> dict[int, list[protocol.CodeRan]]:
    """For each job, the code its claimed chunks ran with: as stored when it finished
    (Job.code_ran), else read from its chunks (one grouped read for all such jobs)."""
    ran = {job.pk: job.code_ran for job in jobs if job.code_ran is not None}
    unsettled = [job.pk for job in jobs if job.code_ran is None]
    if unsettled:
        ran.update(job_state.jobs_code_ran_read(unsettled))
    return ran


def job_code(job: Job) -> protocol.JobCode:
    """The job's code version: submitted with, and ran with (jobs_code_ran)."""
    return protocol.job_code(job, jobs_code_ran([job]).get(job.pk, []))


def job_kind_source_ran(job: Job) -> str:
    """The kind source that computed the job's result: what its chunks ran with when they
    all ran one code, else (none ran yet, or nodes differed) what it was submitted with."""
    ran = jobs_code_ran([job]).get(job.pk, [])
    sources = {entry["kind_source"] for entry in ran}
    if len(sources) == 1 and "" not in sources:
        return sources.pop()
    return job.kind_source


def job_as_api_dict(job: Job) -> JobApiState:
    """A job as the JSON API shows it: protocol.job_state and, while it is active and makes no
    progress, why (`waiting`, from jobs_live; null otherwise)."""
    return jobs_as_api_dicts([job])[0]


def jobs_as_api_dicts(jobs: list[Job]) -> list[JobApiState]:
    """job_as_api_dict of many jobs, with one jobs_live for all the active ones."""
    active = [job for job in jobs if job.is_active]
    live = jobs_live(active)
    # Read after jobs_live, whose registry read (if it timed out) already told.
    broker = redis_clients.broker_status() if active else None
    note = broker.text if broker is not None and not broker.available else None
    ran = jobs_code_ran(jobs)
    return [
        protocol.job_api_state(
            protocol.job_state(job),
            code=protocol.job_code(job, ran.get(job.pk, [])),
            waiting=live[job.pk]["waiting"] if job.pk in live else None,
            broker_unavailable=note if job.is_active else None,
        )
        for job in jobs
    ]


@dataclass(frozen=True)
class _Holder:
    """A running job that holds worker processes (a chunk running on each, live leases)."""

    job_id: int
    owner_id: int
    processes: int


def _process_holders(silent: datetime) -> list[_Holder]:
    """The running jobs that hold live worker processes now (what a queued job waits
    behind), with how many each holds: one query."""
    rows = (
        Chunk.objects.filter(
            status=Chunk.Status.RUNNING,
            lease_expires_at__gte=silent,
            job__status=Job.Status.RUNNING,
        )
        .order_by()
        .values("job_id", "job__owner_id")
        .annotate(processes=Count("lease_owner", distinct=True))
    )
    return sorted(
        (_Holder(row["job_id"], row["job__owner_id"], row["processes"]) for row in rows),
        key=lambda holder: holder.job_id,
    )


def _job_list(ids: list[int]) -> str:
    named = [f"#{job_id}" for job_id in ids]
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return f"{'job' if len(ids) == 1 else 'jobs'} {listed}"


def _held_by_text(job: Job, holders: list[_Holder], capacity: int) -> tuple[str, list[int]]:
    """Why `job` waits for a process, naming the jobs that hold them: its owner's own by
    number (`held_by`, for links), other people's only counted, never described."""
    others = [holder for holder in holders if holder.job_id != job.pk]
    if not others:
        return "Waiting for a free worker process", []
    own = [holder.job_id for holder in others if holder.owner_id == job.owner_id]
    strangers = sum(1 for holder in others if holder.owner_id != job.owner_id)
    parts = [f"{_job_list(own)} (yours)"] if own else []
    if strangers:
        parts.append(
            f"{strangers} job of another person"
            if strangers == 1
            else f"{strangers} jobs of other people"
        )
    busy = sum(holder.processes for holder in others)
    held = f"all {capacity} are" if busy >= capacity else f"{busy} of {capacity} are"
    return f"Waiting for a free worker process: {held} busy with {' and '.join(parts)}", own


def _lost_node_name(node: str, seen: Mapping[str, float], now: datetime) -> str:
    """`lost node <node>` when the registry saw the lease's node go silent, else its
    process alone is lost."""
    beat = seen.get(node)
    if beat is not None and worker_registry.is_lost(beat, now=now.timestamp()):
        return f"lost node {node}"
    return f"a lost process of node {node}"


# --- History: search, sort, compare -----------------------------------------------------------


# What the history table and the compare page read: not the result or error text (large).
HISTORY_COLUMNS = (
    "id",
    "kind",
    # A run a schedule started is marked so in the history.
    "schedule",
    "status",
    "params",
    "parallelism",
    "priority",
    "total_chunks",
    "done_chunks",
    "failed_chunks",
    "created_at",
    "started_at",
    "finished_at",
    "cpu_seconds",
    "peak_rss",
    "processes_used",
    "baseline_seconds",
    "baseline_job",
    "owner",
    "owner__username",
    "sweep",
    "sweep_index",
    "kind_source",
    "coreboard_commit",
)
HISTORY_COMPARE_LIMIT = 500
_BIGINT_MAX = 2**63 - 1


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


class _ContainsIgnoringCase(Lookup):  # type: ignore[type-arg]
    """`lhs ILIKE '%value%'`: a case-insensitive substring test in the form that a pg_trgm
    index on `lhs` serves. Django's `icontains` compares `UPPER(lhs)`, which only an index
    on `UPPER(...)` could serve, and regular expressions need the plain text indexed."""

    lookup_name = "contains_ignoring_case"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        pattern = f"%{connection.ops.prep_for_like_query(self.rhs)}%"
        return f"{lhs} ILIKE %s", [*lhs_params, pattern]


def _text_contains(expression: Any, text: str) -> Q:
    return Q(_ContainsIgnoringCase(expression, text))


def _history_search(jobs: JobQuerySet, q: str) -> JobQuerySet:
    # Every condition below is one an index serves (migration 0008: pg_trgm on
    # JOB_KIND_FOLDED and JOB_PARAMS_TEXT, a B-tree on the upload id; the kind's B-tree, the
    # primary key), so PostgreSQL combines index scans (BitmapOr, BitmapAnd) instead of
    # reading every visible row. One condition no index serves would turn the whole OR into
    # a sequential scan.
    number = q.removeprefix("#")
    # A number past bigint would make PostgreSQL raise; such a number cannot be an id anyway.
    if number.isdecimal() and int(number) <= _BIGINT_MAX:
        return jobs.filter(pk=int(number))
    # The whole text in the kind or the parameters' JSON.
    whole = _text_contains(JOB_KIND_FOLDED, q) | _text_contains(JOB_PARAMS_TEXT, q)
    # Or the words as the pages show a job: a kind's label ("Count primes"), a parameter's
    # form label followed by its value ("Stop 1000"), a label or a value alone.
    words = Q()
    rest = q.casefold()
    for name, label in _parameter_labels():
        found = re.search(rf"(?<!\w){re.escape(label)}\s*:?\s+([^\s·]+)", rest)
        if found is None:
            continue
        value = found.group(1)
        if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", value):
            # As the pages write a large number (jobs.kinds.base.display_value); stored plain.
            value = value.replace(",", "")
        rest = rest[: found.start()] + " " + rest[found.end() :]
        words &= Q(params_text__iregex=rf'"{re.escape(name)}": "?{re.escape(value)}"?[,}}]')
    if rest.split() == [q.lower()] == [q.casefold()]:
        # One plain word: its own conditions hold the whole text's (ILIKE ignores case).
        # Said twice, they doubled a row-by-row check's work and PostgreSQL's estimate of
        # the matches, which then chose a sequential scan.
        whole = Q()
    for word in rest.split():
        words &= _history_search_word(word.strip(":·"))
    # Params keep an upload's id; people search by the file's name.
    named = list(Upload.objects.filter(name__icontains=q).values_list("pk", flat=True)[:1000])
    if named:
        whole |= Q(params__upload__in=named)
    return jobs.alias(params_text=JOB_PARAMS_TEXT).filter(whole | words)


def _parameter_labels() -> list[tuple[str, str]]:
    """(name, casefolded form label) of every kind's parameters, longest labels first."""
    labels = {
        (name, str(form_field.label or pretty_name(name)).casefold())
        for kind in kinds.all_kinds()
        for name, form_field in kind.form_class.base_fields.items()
    }
    return sorted(labels, key=lambda item: -len(item[1]))


def _history_search_word(word: str) -> Q:
    match = _text_contains(JOB_KIND_FOLDED, word) | _text_contains(JOB_PARAMS_TEXT, word)
    folded = word.casefold()
    for kind in kinds.all_kinds():
        if folded in kind.label.casefold():
            match |= Q(kind=kind.name)
    for name, label in _parameter_labels():
        if folded in label:
            match |= _text_contains(JOB_PARAMS_TEXT, f'"{name}":')
    return match


def _history_sorted(jobs: JobQuerySet, sort: str, *, status: str | None = None) -> JobQuerySet:
    chosen = HISTORY_SORTS.get(sort, HISTORY_SORTS[HISTORY_DEFAULT_SORT])
    if chosen.finished_only and status in Job.ACTIVE_STATUSES:
        # No pending or running job has a duration (finished_at is cleared when one runs
        # again): the same order, but not a walk down the whole duration index past every
        # finished job to the blanks at its end.
        return jobs.order_by(*chosen.order[1:])
    return jobs.order_by(*chosen.order)


def job_history_rows(**filters: Any) -> JobQuerySet:
    """job_history(**filters) with only the columns the history table shows."""
    return job_history(**filters).only(*HISTORY_COLUMNS)


# --- The CSV export: rows written by PostgreSQL ------------------------------------------------
# COPY ... TO STDOUT (FORMAT csv) formats and quotes every row inside PostgreSQL, so that the
# web process only passes bytes on: formatting 100,000 rows in Python took ~3 s of a CPU
# under the GIL that every other request of the process waits for (BENCHMARKS.md, History).
# Cells: times in ISO 8601 in UTC (`2024-03-10T12:00:01.5+00:00`, microseconds only when
# there are some), figures rounded to 4 decimals without trailing zeros (`4`, `1.5`,
# `0.375`), empty for none; lines end with \n. Formatting costs PostgreSQL ~0.2 s per
# 100,000 rows this way (to_char and regular expressions took four times as long).


def _csv_time(column: str) -> Func:
    # A timestamp's text under DateStyle ISO (PostgreSQL's default, which Django keeps).
    return Func(
        F(column),
        template="(replace((%(expressions)s AT TIME ZONE 'UTC')::text, ' ', 'T') || '+00:00')",
        output_field=TextField(),
    )


def _csv_figure(column: str) -> Func:
    return Func(
        F(column),
        template="trim_scale(round((%(expressions)s)::numeric, 4))",
        output_field=TextField(),
    )


def _csv_text(column: Any) -> Func:
    # Spreadsheets run a cell that starts like a formula (OWASP "CSV injection"); tab and
    # carriage return are on OWASP's list too, since some spreadsheets strip them first.
    return Func(
        column if not isinstance(column, str) else F(column),
        template=(
            "(CASE WHEN left(%(expressions)s, 1) IN ('=', '+', '-', '@', chr(9), chr(13))"
            " THEN '''' || %(expressions)s ELSE %(expressions)s END)"
        ),
        output_field=TextField(),
    )


# The CSV export: (header, cell of job_history's rows), in column order.
HISTORY_EXPORT: tuple[tuple[str, Any], ...] = (
    ("id", F("id")),
    ("kind", _csv_text("kind")),
    ("owner", _csv_text("owner__username")),
    ("status", _csv_text("status")),
    ("created_at", _csv_time("created_at")),
    ("started_at", _csv_time("started_at")),
    ("finished_at", _csv_time("finished_at")),
    ("wall_seconds", _csv_figure("timed_wall_seconds")),
    ("cpu_seconds", _csv_figure("cpu_seconds")),
    (scaling.SPEEDUP.key, _csv_figure("timed_speedup")),
    ("speedup_baseline", F("timed_speedup_baseline")),
    (scaling.PARALLELISM_ACHIEVED.key, _csv_figure("timed_parallelism_achieved")),
    (scaling.PROCESSES_USED.key, F("processes_used")),
    (scaling.EFFICIENCY.key, _csv_figure("timed_efficiency")),
    ("total_chunks", F("total_chunks")),
    ("done_chunks", F("done_chunks")),
    ("failed_chunks", F("failed_chunks")),
    ("peak_rss", F("peak_rss")),
    ("params", _csv_text(JOB_PARAMS_TEXT)),
)
# Bytes sent per streamed piece.
HISTORY_EXPORT_PIECE_BYTES = 64 * 1024


def job_history_csv(**filters: Any) -> Generator[bytes, None, None]:
    """job_history(**filters) as CSV, its header line first, in pieces of about
    HISTORY_EXPORT_PIECE_BYTES, read through COPY on this thread's database connection.

    Closing the generator early ends the COPY (psycopg cancels it and drains the rest).
    """
    rows = job_history(**filters).values_list(*(cell for _, cell in HISTORY_EXPORT))
    query, params = rows.query.sql_with_params()
    piece = bytearray(",".join(name for name, _ in HISTORY_EXPORT).encode() + b"\n")
    # Django's psycopg cursors bind parameters on the client, which COPY needs.
    statement = f"COPY ({query}) TO STDOUT (FORMAT csv)"
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for data in copy:
            piece += data
            if len(piece) >= HISTORY_EXPORT_PIECE_BYTES:
                yield bytes(piece)
                piece.clear()
    yield bytes(piece)


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
        jobs.select_related("owner")
        .only(*HISTORY_COLUMNS)
        .with_timings()
        .order_by("-finished_at", "-id")[:limit]
    )
    return [
        {
            "id": job.pk,
            "url": reverse("jobs:detail", args=[job.pk]),
            "owner": job.owner.get_username(),
            "finished_at": job.finished_at,
            **job_figures(job),
        }
        for job in reversed(list(latest))
    ]


# --- Comparing chosen runs side by side --------------------------------------------------------

# A compared run's task stream draws at most this many chunks (lowest index first): the
# stream merges bars above 300 anyway, and 8 runs × 5,000 chunks made a 10 MB, 3 s page.
# Its chunk-time distribution counts every finished chunk (in PostgreSQL).
COMPARE_CHUNKS_MAX = 1_000
# The chunk-time histogram's bins, one width shared by every compared run.
CHUNK_TIME_BINS = 20

_CHUNK_SECONDS = "extract(epoch FROM finished_at - started_at)::float8"
_CHUNK_TIME_STATS_SQL = f"""
SELECT job_id, count(*), min({_CHUNK_SECONDS}),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY {_CHUNK_SECONDS}),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY {_CHUNK_SECONDS}),
       max({_CHUNK_SECONDS})
FROM jobs_chunk
WHERE job_id = ANY(%(ids)s) AND status = 'done' AND started_at IS NOT NULL
  AND finished_at IS NOT NULL
GROUP BY job_id
"""  # noqa: S608 - constant text; the values are parameters
_CHUNK_TIME_BINS_SQL = f"""
SELECT job_id, least(width_bucket({_CHUNK_SECONDS}, %(lo)s, %(hi)s, %(bins)s), %(bins)s) AS bin,
       count(*)
FROM jobs_chunk
WHERE job_id = ANY(%(ids)s) AND status = 'done' AND started_at IS NOT NULL
  AND finished_at IS NOT NULL
GROUP BY job_id, bin
"""  # noqa: S608 - constant text; the values are parameters


def jobs_chunk_times(
    job_ids: Sequence[int], *, bins: int = CHUNK_TIME_BINS
) -> tuple[dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Every finished (done) chunk's run time of each job, summed up in PostgreSQL: per job
    `{count, min, median, p90, max}` (seconds), and a histogram on bins shared by all the
    jobs, `{edges: [lo, …, hi], counts: {job_id: [n per bin]}}` (None when no chunk
    finished; equal times make one bin). Two grouped reads, whatever the jobs' sizes."""
    ids = list(job_ids)
    with connection.cursor() as cursor:
        cursor.execute(_CHUNK_TIME_STATS_SQL, {"ids": ids})
        stats = {
            row[0]: {
                "count": row[1],
                "min": protocol.rounded(row[2]),
                "median": protocol.rounded(row[3]),
                "p90": protocol.rounded(row[4]),
                "max": protocol.rounded(row[5]),
            }
            for row in cursor.fetchall()
        }
        if not stats:
            return stats, None
        lo = min(float(row["min"] or 0) for row in stats.values())
        hi = max(float(row["max"] or 0) for row in stats.values())
        count = bins if hi > lo else 1
        top = hi if hi > lo else lo + 1
        cursor.execute(_CHUNK_TIME_BINS_SQL, {"ids": ids, "lo": lo, "hi": top, "bins": count})
        counts = {job_id: [0] * count for job_id in ids}
        for job_id, bucket, n in cursor.fetchall():
            # width_bucket: 1..count inside, count + 1 at the top edge (folded into count).
            counts[job_id][max(1, bucket) - 1] += n
    width = (top - lo) / count
    edges = [protocol.rounded(lo + i * width) for i in range(count + 1)]
    return stats, {"edges": edges, "counts": counts}


def jobs_compared(*, user: Any, job_ids: Sequence[int]) -> list[Job]:
    """The jobs `job_ids` in that order, with their timings, if `user` may see every one;
    Http404 otherwise (another person's job and a missing one alike, as job_get_for_user)."""
    found = (
        jobs_visible_to(user)
        .filter(pk__in=job_ids)
        .select_related("owner")
        .with_timings()
        .in_bulk()
    )
    if len(found) != len(set(job_ids)):
        raise Http404("No such job.")
    return [found[job_id] for job_id in job_ids]


def job_figures(job: Job) -> dict[str, Any]:
    """A run's figures as compare pages show them (jobs.scaling's definitions, through the
    Job properties and with_timings)."""
    return {
        "wall_seconds": protocol.rounded(job.wall_seconds),
        "cpu_seconds": protocol.rounded(job.cpu_seconds),
        "speedup": protocol.rounded(job.speedup),
        "speedup_baseline": job.speedup_baseline,
        "parallelism_achieved": protocol.rounded(job.parallelism_achieved),
        "processes_used": job.processes_used,
        "efficiency": protocol.rounded(job.efficiency),
        "parallelism": job.parallelism,
        "total_chunks": job.total_chunks,
    }


def jobs_compared_chunks(
    job_ids: Sequence[int], *, limit: int = COMPARE_CHUNKS_MAX
) -> dict[int, list[dict[str, Any]]]:
    """For each job, its first `limit` chunks that started, as the task stream draws them
    (times in ISO 8601): one read."""
    ranked = (
        Chunk.objects.filter(job_id__in=job_ids, started_at__isnull=False)
        .annotate(rank=Window(RowNumber(), partition_by=[F("job_id")], order_by=F("index").asc()))
        .values(
            "job_id",
            "index",
            "status",
            "attempts",
            "worker",
            "pid",
            "queued_at",
            "started_at",
            "finished_at",
            "rank",
        )
    )
    chunks: dict[int, list[dict[str, Any]]] = {job_id: [] for job_id in job_ids}
    for row in ranked.filter(rank__lte=limit).order_by("job_id", "index"):
        chunks[row["job_id"]].append(
            {
                "index": row["index"],
                "status": row["status"],
                "attempts": row["attempts"],
                "worker": row["worker"],
                "pid": row["pid"],
                "queued_at": protocol.iso(row["queued_at"]),
                "started_at": protocol.iso(row["started_at"]),
                "finished_at": protocol.iso(row["finished_at"]),
            }
        )
    return chunks
