"""The one typed shape of everything Coreboard sends: job and chunk states, the job socket's
messages, the overview's state, errors, and what a client may send.

The JSON API (jobs/api/), its OpenAPI description (jobs/api/openapi.py derives the JobOut,
ChunkOut and WaitingOut schemas from the TypedDicts here), the publisher
(jobs/engine/events.py), the consumers (jobs/sockets/consumers.py), the generated
docs/protocol.md and the tests all build or check messages through this module, so a
field is declared once: add it to the TypedDict (with its description in `Annotated`) and
to its builder below, and every reader has it.

Public message types (the `type` of a websocket message, read by the pages and the command
line client) are separate from the channel-layer events that processes send each other:
Channels dispatches an event `{"type": "job.changed"}` to the consumer method
`job_changed`, which is an internal name and never reaches a browser.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal, NotRequired, TypedDict, TypeGuard, cast

from django.urls import reverse

from jobs import scaling
from jobs.kinds.loading import LoadFailure
from jobs.models import Chunk, Job, ScalingStudy, Schedule, Sweep, Upload, priority_name
from jobs.scaling import ScalingAnalysis, ScalingPoint

# --- public message types (websocket `type`) ---------------------------------------------------

JOB_SNAPSHOT: Literal["job.snapshot"] = "job.snapshot"
JOB_CHUNKS: Literal["job.chunks"] = "job.chunks"
JOB_PROGRESS: Literal["job.progress"] = "job.progress"
JOB_LIVE: Literal["job.live"] = "job.live"
CHUNK_OUTPUT: Literal["chunk.output"] = "chunk.output"
JOB_RESOURCES: Literal["job.resources"] = "job.resources"
OVERVIEW_STATE: Literal["overview.state"] = "overview.state"
ERROR: Literal["error"] = "error"
# Whether live updates flow (the channel layer's Redis answers); also a socket's heartbeat.
BROKER_STATE: Literal["broker.state"] = "broker.state"
# The one message a client sends (job socket): asks for a fresh snapshot.
RESYNC: Literal["resync"] = "resync"
# Every public type, in the order the generated reference (docs/protocol.md) lists them.
PUBLIC_MESSAGE_TYPES = (
    JOB_SNAPSHOT,
    JOB_CHUNKS,
    JOB_PROGRESS,
    JOB_LIVE,
    CHUNK_OUTPUT,
    JOB_RESOURCES,
    OVERVIEW_STATE,
    ERROR,
    BROKER_STATE,
    RESYNC,
)

# --- channel-layer events between processes (handled by the consumer method of that name,
# dots as underscores); never sent to a client ---------------------------------------------------

EVENT_JOB_CHANGED: Literal["job.changed"] = "job.changed"
EVENT_CLUSTER_CHANGED: Literal["cluster.changed"] = "cluster.changed"
# A worker's new chunk output and process samples (jobs.engine.output, jobs.engine.resources),
# relayed as `chunk.output` and `job.resources`.
EVENT_CHUNK_PRINTED: Literal["chunk.printed"] = "chunk.printed"
EVENT_JOB_SAMPLED: Literal["job.sampled"] = "job.sampled"
CHANNEL_LAYER_EVENTS = (
    EVENT_JOB_CHANGED,
    EVENT_CLUSTER_CHANGED,
    EVENT_CHUNK_PRINTED,
    EVENT_JOB_SAMPLED,
)


# --- websocket close codes (4000-4999 are the application's; 4xxx echo HTTP's statuses) ------
# static/lib/live.mjs keeps its copy (CLOSE_CODES); tests/consumers/test_close_codes.py
# compares the two.

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_SOCKETS = 4429
CLOSE_SERVER_ERROR = 4500
# After these a page stops reconnecting: retrying cannot help (not logged in, not yours).
CLOSE_FINAL = frozenset({CLOSE_UNAUTHENTICATED, CLOSE_NOT_FOUND})


class DateTime:
    """`Annotated` marker: an ISO 8601 date and time in a string (OpenAPI `date-time`)."""


# --- the packed chunk grid of a snapshot (static/jobs/job_state.mjs keeps its copy; ----------
# tests/consumers compare them) ---------------------------------------------------------------

# A chunk's status code in `JobSnapshotMessage.grid` is its position here.
CHUNK_STATUS_CODES: tuple[str, ...] = (
    Chunk.Status.PENDING.value,
    Chunk.Status.RUNNING.value,
    Chunk.Status.DONE.value,
    Chunk.Status.FAILED.value,
    Chunk.Status.CANCELLED.value,
)
_STATUS_CODE = {status: code for code, status in enumerate(CHUNK_STATUS_CODES)}
# "0 pending, 1 running, …", as docs/protocol.md (and tests/js/job_state.test.mjs) read it.
GRID_CODES_TEXT = ", ".join(f"{code} {status}" for code, status in enumerate(CHUNK_STATUS_CODES))
GRID_STATUS_MASK = 0x07
GRID_RETRIED = 0x08
# The window of full chunk states a snapshot carries besides the grid: the running chunks,
# the ones started last (the task stream's recent bars) and the first ones with an error
# (the page lists at most this many failures).
SNAPSHOT_RECENT = 300
SNAPSHOT_FAILING = 200


# --- states ---------------------------------------------------------------------------------------

WaitingReason = Literal[
    "lock_holder_silent", "no_worker_with_kind", "lost_leases", "retry_backoff", "queued"
]


class WaitingState(TypedDict):
    """Why an active job makes no progress now (selectors.jobs_live)."""

    reason: Annotated[WaitingReason, "The first reason that applies."]
    text: Annotated[
        str,
        "Every reason that applies, in words, e.g. "
        "\"Waiting: no live worker has the kind 'mandelbrot'\".",
    ]
    seconds: Annotated[float | None, "Seconds until the first reason ends by itself, if known."]
    held_by: Annotated[
        list[int],
        "While it waits for a free worker process: the ids of the owner's own jobs that hold "
        "them (other people's are only counted in `text`).",
    ]


# A job's priority as people write it (jobs.models.priority_name of Job.Priority).
PriorityName = Literal["low", "normal", "high", "urgent"]


class JobState(TypedDict):
    """A job as the pages, the sockets and the API show it (built by `job_state`)."""

    id: int
    kind: str
    params: Annotated[dict[str, Any], "The validated parameters of its kind."]
    status: Annotated[str, Job.Status]
    progress: Annotated[float, "Done chunks / total chunks, 0..1 (1 once succeeded)."]
    total_chunks: int
    done_chunks: int
    failed_chunks: int
    parallelism: Annotated[int, "Most worker processes at once; 0: all live ones with its kind."]
    chunk_time_limit_s: Annotated[
        int | None,
        "Seconds one chunk may run before its process is stopped and the chunk fails, as the "
        "job asked (at most its kind's limit); null: its kind's limit.",
    ]
    priority: Annotated[
        PriorityName,
        "Which waiting work the workers take first; within one job nothing changes.",
    ]
    result: Annotated[Any, "The kind's result, once done."]
    error: str
    created_at: Annotated[str, DateTime]
    started_at: Annotated[str | None, DateTime]
    finished_at: Annotated[str | None, DateTime]
    wall_seconds: Annotated[float | None, scaling.WALL.definition]
    cpu_seconds: Annotated[float, "CPU seconds of its done chunks, summed."]
    speedup: Annotated[float | None, scaling.SPEEDUP.definition]
    speedup_baseline: Annotated[
        Literal["measured", "cpu"] | None,
        "What the speedup's time one process would take is: `measured`, the wall time of a "
        "parallelism-1 run (`baseline_job`); `cpu`, the sum of its chunks' CPU time.",
    ]
    baseline_seconds: Annotated[
        float | None, "The time one process would take, when measured (else null)."
    ]
    baseline_job: Annotated[int | None, "The parallelism-1 run that measured it."]
    parallelism_achieved: Annotated[float | None, scaling.PARALLELISM_ACHIEVED.definition]
    processes_used: Annotated[int | None, scaling.PROCESSES_USED.definition]
    efficiency: Annotated[float | None, scaling.EFFICIENCY.definition]
    version: Annotated[int, "Bumped by every change of the job; newer states have higher ones."]
    result_file: Annotated[str | None, "URL of the result file."]


class CodeRan(TypedDict):
    """Code that ran some of a job's chunks, as the worker process that claimed them had
    loaded it."""

    kind_source: Annotated[str, "sha256 of the kind's source files (hex); empty: unknown."]
    coreboard_commit: Annotated[str, "The worker's Coreboard commit; empty: unknown."]
    chunks: Annotated[int, "How many of the job's claimed chunks ran last with this code."]


class JobCode(TypedDict):
    """The code version of a job: what it was submitted with (the web process's) and what
    its chunks ran with (each worker's). More than one entry in `ran` means nodes ran
    different code."""

    kind_package: Annotated[
        str,
        "The installed distribution the kind came from at submission, as `name version`; "
        "`built into Coreboard` for a built-in kind; empty when it comes from no installed "
        "package (a kinds folder).",
    ]
    kind_source: Annotated[
        str, "sha256 of the kind's source files at submission (hex); empty: unknown."
    ]
    coreboard_commit: Annotated[str, "The Coreboard commit at submission; empty: unknown."]
    ran: list[CodeRan]


class JobApiState(JobState):
    """A job as the JSON API shows it: its state, its code version, and why it waits."""

    code: JobCode

    waiting: Annotated[
        WaitingState | None,
        "While the job is active and makes no progress: why (it is not failed).",
    ]
    broker_unavailable: Annotated[
        str | None,
        "While the job is active and the broker (Redis) does not answer: what that means "
        "(live figures unknown, new work starts once it answers); null otherwise.",
    ]


class ChunkState(TypedDict):
    """One chunk of a job (built by `chunk_state`)."""

    index: int
    status: Annotated[str, Chunk.Status]
    attempts: int
    worker: Annotated[
        str,
        "The worker node whose process ran it last (its Celery node name, e.g. "
        "`coreboard-1a2b3c4d@host`: two machines with one host name stay apart); empty "
        "before its first claim. Chunks of older versions hold a host name.",
    ]
    pid: int | None
    queued_at: Annotated[str | None, DateTime]
    started_at: Annotated[str | None, DateTime]
    finished_at: Annotated[str | None, DateTime]
    cpu_seconds: float | None
    error: str
    cpu_user_s: Annotated[float | None, "User CPU seconds of its run (once it ended)."]
    cpu_system_s: Annotated[float | None, "System CPU seconds of its run (once it ended)."]
    start_rss: Annotated[int | None, "Resident memory of its process when it started, bytes."]
    peak_rss: Annotated[int | None, "Peak resident memory of its process while it ran, bytes."]
    output_bytes: Annotated[
        int,
        "Bytes it wrote (stdout, stderr, log records), cut ones included; 0 when none. "
        "The text: GET /api/jobs/<id>/chunks/<index>/output/.",
    ]


class ChunkDelta(TypedDict, total=False):
    """What changed of one chunk in a `job.progress`: its index and any ChunkState fields,
    plus `progress` (0..1) while it runs."""

    index: int
    status: str
    attempts: int
    worker: str
    pid: int | None
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    cpu_seconds: float | None
    error: str
    cpu_user_s: float | None
    cpu_system_s: float | None
    start_rss: int | None
    peak_rss: int | None
    output_bytes: int
    progress: float
    # False on a chunk told done as it ended, before its outcome is stored (its result and
    # output cannot be fetched yet); True once stored. Absent: stored.
    recorded: bool


class LiveState(TypedDict):
    """What an active job is doing now (selectors.jobs_live)."""

    throughput: float | None
    eta_seconds: float | None
    processes_now: int | None
    waiting: WaitingState | None


class ActiveJobState(JobState):
    """A running or queued job on the overview: its state and its LiveState."""

    throughput: float | None
    eta_seconds: float | None
    processes_now: int | None
    waiting: WaitingState | None


class JobsOverview(TypedDict):
    active: list[ActiveJobState]
    active_more: int
    recent: list[JobState]


class ProcessState(TypedDict):
    id: str
    node: str
    host: str
    pid: int
    core: int | None
    state: str
    job_id: int | None
    chunk_index: int | None
    since: float
    last_seen: float
    # Busy with a job the reader cannot see (then job_id and chunk_index are null).
    other: NotRequired[bool]


class NodeInfo(TypedDict):
    """What a worker's main process publishes about itself (jobs.engine.workers.node_info)."""

    host: str
    boot: str
    pid: int
    code_version: str
    coreboard_version: str
    python_version: str
    # The kinds it runs (COREBOARD_WORKER_KINDS, else every kind registered there).
    kinds: list[str]
    # Kind modules that failed to import there (jobs.kinds.loading); staff see them.
    kind_failures: list[LoadFailure]
    labels: list[str]
    concurrency: int
    queues: list[str]
    started: float
    # The name it was started with, when another machine's worker held that one and it
    # runs as `<name>-2` instead (jobs.engine.workers.node_take); "" otherwise.
    renamed_from: str


class NodeState(TypedDict):
    """A worker node on the overview (jobs.engine.workers.cluster_state)."""

    node: str
    host: str
    cpus: list[float]
    lost: bool
    last_seen: float
    # active, draining, drained, stopping or lost.
    state: str
    # An operator drained it (a warm shutdown shows as state "stopping").
    draining: bool
    busy: int
    code_version: str
    coreboard_version: str
    python_version: str
    kinds: list[str]
    missing_kinds: list[str]
    extra_kinds: list[str]
    # Empty for people who are not staff (selectors.cluster_for_user).
    kind_failures: list[LoadFailure]
    labels: list[str]
    queues: list[str]
    concurrency: int | None
    started: float | None
    # The name it was started with, when it runs under another (NodeInfo.renamed_from).
    renamed_from: str


class WebState(TypedDict):
    """The web process the overview compares its nodes with."""

    code_version: str
    kinds: list[str]
    # Kind modules that failed to import in the web process; empty for people who are not staff.
    kind_failures: list[LoadFailure]


class ClusterState(TypedDict):
    """jobs.engine.workers.cluster_state, and as a person may see it
    (selectors.cluster_for_user)."""

    now: float
    web: WebState
    nodes: list[NodeState]
    processes: list[ProcessState]
    throughput: list[list[int]]


# A study level whose run has not been created yet (StudyRunState.status).
RUN_WAITING: Literal["waiting"] = "waiting"


class StudyRunState(TypedDict):
    """One level of a study: its run and the figures jobs/scaling.py gives it (built by
    `study_run_state`; the CSV export has these columns, in this order)."""

    parallelism: int
    job: Annotated[int | None, "The run's job; null until it starts."]
    status: Annotated[str, Job.Status, Literal["waiting"], "The run's job status, or waiting."]
    wall_seconds: Annotated[float | None, "Of a succeeded run."]
    speedup: Annotated[
        float | None, "Wall at p = 1 / wall at p: the run's own speedup (its baseline is p = 1)."
    ]
    ideal_speedup: Annotated[float, "p."]
    efficiency: Annotated[float | None, "Speedup / p."]
    karp_flatt: Annotated[float | None, "(1/speedup - 1/p) / (1 - 1/p); null at p = 1."]
    amdahl_speedup: Annotated[
        float | None, "What Amdahl's law with the fitted serial fraction predicts."
    ]


class StudyState(TypedDict):
    """A scaling study, for its page, the API and the JSON export (built by `study_state`)."""

    id: int
    url: Annotated[str, "Its page."]
    status: Annotated[str, ScalingStudy.Status]
    kind: str
    params: dict[str, Any]
    source_job: Annotated[int | None, "The job it measures."]
    levels: Annotated[list[int], "Parallelisms."]
    created_at: Annotated[str, DateTime]
    finished_at: Annotated[str | None, DateTime]
    error: str
    serial_fraction: Annotated[
        float | None,
        "Amdahl's serial fraction f, least-squares fit; null with fewer than "
        f"{scaling.AMDAHL_MIN_POINTS} measured levels (see fit_note).",
    ]
    max_speedup: Annotated[float | None, "1 / f."]
    fit_note: Annotated[str | None, "Why there is no Amdahl fit; null when there is one."]
    runs: list[StudyRunState]


class ScheduleState(TypedDict):
    """A schedule, for its page and the API (built by `schedule_state`)."""

    id: int
    url: Annotated[str, "Its page."]
    name: str
    kind: str
    params: dict[str, Any]
    parallelism: Annotated[int | None, "Null: the default."]
    chunk_time_limit_s: Annotated[int | None, "Null: the kind's limit."]
    cron: Annotated[
        str | None, "Minute hour day-of-month month day-of-week, in `timezone`; null: an interval."
    ]
    every: Annotated[int | None, "The interval, in `unit`; null: a cron expression."]
    unit: Annotated[str | None, "seconds, minutes, hours or days; null: a cron expression."]
    timezone: Annotated[str, "IANA name; the cron expression is read in it."]
    enabled: bool
    next_run_at: Annotated[
        str | None, DateTime, "When it fires next, as beat reckons it; null while off."
    ]
    skip_if_active: Annotated[bool, "No run while the previous one is pending or running."]
    source_job: Annotated[int | None, "The job it was saved from."]
    created_at: Annotated[str, DateTime]
    last_fired_at: Annotated[str | None, DateTime, "When it last fired (a run made or not)."]
    last_error: Annotated[str, "Why its last refused or skipped fire made no run."]
    last_error_at: Annotated[str | None, DateTime]
    runs: Annotated[int, "Jobs it made."]
    last_run: Annotated[int | None, "Its newest job."]


def schedule_state(
    schedule: Schedule,
    *,
    cron: str | None,
    every: int | None,
    unit: str | None,
    timezone: str,
    enabled: bool,
    next_run_at: datetime | None,
    runs: int,
    last_run: int | None,
) -> ScheduleState:
    return {
        "id": schedule.pk,
        "url": reverse("jobs:schedule", args=[schedule.pk]),
        "name": schedule.name,
        "kind": schedule.kind,
        "params": schedule.params,
        "parallelism": schedule.parallelism,
        "chunk_time_limit_s": schedule.chunk_time_limit_s,
        "cron": cron,
        "every": every,
        "unit": unit,
        "timezone": timezone,
        "enabled": enabled,
        "next_run_at": iso(next_run_at),
        "skip_if_active": schedule.skip_if_active,
        "source_job": schedule.source_id,
        "created_at": schedule.created_at.isoformat(),
        "last_fired_at": iso(schedule.last_fired_at),
        "last_error": schedule.last_error,
        "last_error_at": iso(schedule.last_error_at),
        "runs": runs,
        "last_run": last_run,
    }


# A sweep's status, from its jobs': running while any is active, then succeeded when all
# did, failed when any failed, else cancelled (jobs.selectors.sweeps.sweep_status).
SweepStatus = Literal["running", "succeeded", "failed", "cancelled"]


class SweepRunState(TypedDict):
    """One job of a sweep and its figures as jobs/scaling.py defines them (built by
    `sweep_run_state`; the CSV export has these figures after the parameters)."""

    index: Annotated[int, "Its place in the sweep, 0 to N-1."]
    job: int
    url: Annotated[str, "Its job page."]
    status: Annotated[str, Job.Status]
    params: Annotated[dict[str, Any], "Every parameter of the run."]
    wall_seconds: Annotated[float | None, "Started to finished."]
    cpu_seconds: float
    speedup: Annotated[float | None, scaling.SPEEDUP.definition]
    result: Annotated[str, "The kind's result in one line; empty until done."]


class SweepState(TypedDict):
    """A sweep, for its page, the API and the CSV export (built by `sweep_state`)."""

    id: int
    url: Annotated[str, "Its page."]
    status: Annotated[str, SweepStatus]
    kind: str
    owner: str
    params: Annotated[dict[str, Any], "The parameters every run shares."]
    swept: Annotated[list[str], "The parameters that vary, in the grid's order."]
    grid: Annotated[dict[str, list[Any]] | None, "Values per swept parameter; null for a list."]
    parallelism: int
    chunk_time_limit_s: int | None
    created_at: Annotated[str, DateTime]
    counts: Annotated[dict[str, int], "Jobs by status."]
    runs: list[SweepRunState]


class UploadState(TypedDict):
    """An upload, as its creation answers (built by `upload_state`)."""

    id: int
    name: str
    size: Annotated[int, "Bytes."]


class UploadListItemState(UploadState):
    """An upload in one's list (built by `upload_list_item_state`)."""

    created_at: Annotated[str, DateTime]
    jobs: Annotated[int, "How many jobs read it."]


class ChunkOutputItem(TypedDict):
    """What one chunk wrote (stdout, stderr and log records while it ran), from a byte
    offset: the live tail while it runs, its stored tail once it ended."""

    index: int
    status: Annotated[str, Chunk.Status]
    offset: Annotated[
        int, "Byte offset, in the chunk's whole output, of the first character of `text`."
    ]
    text: Annotated[str, "Its output from `offset` on (only the retained tail is kept)."]
    cut_bytes: Annotated[
        int, "Bytes of its output cut before the retained tail (the bound is per chunk)."
    ]
    running: Annotated[bool, "Still running: more output may follow."]


class ChunkOutputState(ChunkOutputItem):
    """One chunk's output (GET /api/jobs/<id>/chunks/<index>/output/)."""

    job: int


class JobOutputState(TypedDict):
    """The output of a job's chunks that wrote anything, by index
    (GET /api/jobs/<id>/output/)."""

    job: int
    chunks: list[ChunkOutputItem]


class ResourceSample(TypedDict):
    """One worker process's CPU use and resident memory while it ran one of the job's
    chunks (sampled about once a second)."""

    process: Annotated[str, "The worker process, `node|pid|boot`."]
    pid: int
    at: Annotated[str, DateTime]
    cpu_percent: Annotated[float, "CPU use of the process since its previous sample (100: a core)."]
    rss: Annotated[int, "Resident memory, bytes."]


class JobResourcesState(TypedDict):
    """A job's CPU and memory timeline per process (GET /api/jobs/<id>/resources/)."""

    job: int
    samples: list[ResourceSample]


# --- messages -------------------------------------------------------------------------------------


class LaneState(TypedDict):
    """One worker process that ran some of a job's chunks (a lane of the task stream)."""

    worker: Annotated[str, "Its worker node (ChunkState.worker)."]
    pid: int
    chunks: Annotated[int, "How many of the job's chunks it ran last (claimed, at any attempt)."]
    last_finished_at: Annotated[
        str | None, DateTime, "When the last of them ended; null while none has."
    ]


class ChunkPeak(TypedDict):
    """The chunk with the largest peak resident memory so far."""

    index: int
    peak_rss: Annotated[int, "Bytes."]


class JobSnapshotMessage(TypedDict):
    """A job's whole state when a socket (re)connects or resyncs, compact whatever the
    job's size: the statuses of all its chunks packed one byte each (`grid`), its
    processes (`lanes`), its peak, and the full states of a bounded window of its chunks
    (`chunks`: the running ones, the last ones started and the failing ones, in
    `chunk_pages` messages in all). A page asks for any other chunk's state when a person
    opens it: GET /api/jobs/<id>/chunks/<index>/ (and the whole list, paged:
    GET /api/jobs/<id>/chunks/)."""

    type: Literal["job.snapshot"]
    seq: int
    job: JobState
    grid: Annotated[
        str,
        "Base64 of one byte per chunk, by index: the low three bits are its status "
        f"({GRID_CODES_TEXT}: CHUNK_STATUS_CODES), "
        "bit 3 (8) is set when it took more than one attempt. A 100,000-chunk job's is "
        "133 KB.",
    ]
    lanes: list[LaneState]
    peak: ChunkPeak | None
    chunks: Annotated[
        list[ChunkState],
        "The full states of the first page of the window (running chunks, the "
        f"{SNAPSHOT_RECENT} started last, the first {SNAPSHOT_FAILING} with an error), by "
        "index.",
    ]
    chunk_pages: Annotated[int, "Messages the window takes: this one and `job.chunks` ones."]
    live: LiveState | None


class JobChunksMessage(TypedDict):
    """A further page of a snapshot's window of chunk states (same `seq`)."""

    type: Literal["job.chunks"]
    seq: int
    page: int
    chunks: list[ChunkState]


class JobProgressMessage(TypedDict):
    type: Literal["job.progress"]
    seq: int
    job: JobState | None
    chunks: list[ChunkDelta]


class JobLiveMessage(TypedDict):
    type: Literal["job.live"]
    live: LiveState


class ChunkOutputMessage(TypedDict):
    """New output of a chunk: `text` starts at byte `offset` of the chunk's whole output. A
    page appends it when `offset` is the length it has, and otherwise fetches the chunk's
    output from the API. Sent at most about every 0.5 s while a chunk writes, and once
    when it ends (then `text` may be empty when the chunk's output was too much to send
    live: `offset` is then its whole length)."""

    type: Literal["chunk.output"]
    job: int
    index: int
    offset: int
    text: str
    cut_bytes: int


class JobResourcesMessage(TypedDict):
    """The newest process samples of a job, about once a second while it runs."""

    type: Literal["job.resources"]
    job: int
    samples: list[ResourceSample]


class OverviewStateMessage(JobsOverview):
    type: Literal["overview.state"]
    cluster: ClusterState


class ErrorMessage(TypedDict):
    type: Literal["error"]
    error: str


class BrokerStateMessage(TypedDict):
    """Whether live updates flow: `available` is false while the channel layer's Redis
    does not answer (updates paused; the page says so), true again once it does (a job
    socket sends a fresh snapshot first). Sent on every change, and as a heartbeat on a
    socket that has sent nothing else for a few seconds: a page that hears nothing at all
    for longer knows its socket is dead and reconnects."""

    type: Literal["broker.state"]
    available: bool


class ResyncMessage(TypedDict):
    type: Literal["resync"]


class JobChangedEvent(TypedDict):
    """Channel-layer event from a publisher to the job's group (jobs/engine/events.py)."""

    type: Literal["job.changed"]
    job_id: int
    seq: int
    job: JobState | None
    chunks: list[ChunkDelta]


class ChunkPrintedEvent(TypedDict):
    """Channel-layer event from a worker to the job's group, relayed as `chunk.output`."""

    type: Literal["chunk.printed"]
    message: ChunkOutputMessage


class JobSampledEvent(TypedDict):
    """Channel-layer event from a worker to the job's group, relayed as `job.resources`."""

    type: Literal["job.sampled"]
    message: JobResourcesMessage


# --- refusals (jobs.services.errors): the API's 400 and 409 bodies ------------------------------

# Errors by field: each field's messages, or for `params` each parameter's messages
# (`{"params": {"stop": ["..."]}}`), as a 400 of the API carries them.
FieldErrors = dict[str, Any]


class ConflictBody(TypedDict):
    """A 409: the job, study or upload is not in a state for this action.

    Two shapes used to answer a 409 (`status` for jobs and studies, `detail` for uploads);
    every 409 now carries both, so clients of either keep working."""

    detail: Annotated[str, "Why, in words."]
    status: Annotated[list[str], "The same reason, as the errors of the `status` field."]


# --- builders -------------------------------------------------------------------------------------


def iso(value: Any) -> str | None:
    """How every time is written in a message."""
    return value.isoformat() if value else None


def rounded(value: float | None, digits: int = 4) -> float | None:
    """How every figure is rounded in a message."""
    return round(value, digits) if value is not None else None


def job_state(job: Job) -> JobState:
    """A job's state, its figures as jobs/scaling.py defines them."""
    measured = job.speedup_baseline == scaling.BASELINE_MEASURED
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
        "chunk_time_limit_s": job.chunk_time_limit_s,
        "priority": cast(PriorityName, priority_name(job.priority)),
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "wall_seconds": rounded(job.wall_seconds),
        "cpu_seconds": round(job.cpu_seconds, 4),
        "speedup": rounded(job.speedup),
        "speedup_baseline": job.speedup_baseline,
        "baseline_seconds": rounded(job.baseline_seconds) if measured else None,
        "baseline_job": job.baseline_job_id if measured else None,
        "parallelism_achieved": rounded(job.parallelism_achieved),
        "processes_used": job.processes_used,
        "efficiency": rounded(job.efficiency),
        "version": job.version,
        "result_file": (reverse("api-job-result-file", args=[job.pk]) if job.result_file else None),
    }


def job_api_state(
    state: JobState,
    *,
    code: JobCode,
    waiting: WaitingState | None,
    broker_unavailable: str | None = None,
) -> JobApiState:
    return {**state, "code": code, "waiting": waiting, "broker_unavailable": broker_unavailable}


def job_code(job: Job, ran: list[CodeRan]) -> JobCode:
    return {
        "kind_package": job.kind_package,
        "kind_source": job.kind_source,
        "coreboard_commit": job.coreboard_commit,
        "ran": ran,
    }


def chunk_output_bytes(chunk: Chunk) -> int:
    """Bytes a chunk wrote: read as the `output_bytes` annotation of
    selectors.job_chunks (no need to load the text), else from its fields."""
    known = getattr(chunk, "output_bytes", None)
    if known is not None:
        return int(known)
    kept = output_without_marker(chunk.output, chunk.output_cut_bytes)
    return chunk.output_cut_bytes + len(kept.encode())


def output_cut_marker(cut_bytes: int) -> str:
    """The line a stored chunk output starts with when its beginning was cut."""
    return f"[… {cut_bytes:,} earlier bytes cut …]\n"


def output_without_marker(stored: str, cut_bytes: int) -> str:
    """A stored chunk output without its cut marker: the bytes it kept, as written."""
    return stored.removeprefix(output_cut_marker(cut_bytes)) if cut_bytes else stored


def chunk_state(chunk: Chunk) -> ChunkState:
    return {
        "index": chunk.index,
        "status": chunk.status,
        "attempts": chunk.attempts,
        "worker": chunk.worker,
        "pid": chunk.pid,
        "queued_at": iso(chunk.queued_at),
        "started_at": iso(chunk.started_at),
        "finished_at": iso(chunk.finished_at),
        "cpu_seconds": rounded(chunk.cpu_seconds),
        "error": chunk.error,
        "cpu_user_s": rounded(chunk.cpu_user_s),
        "cpu_system_s": rounded(chunk.cpu_system_s),
        "start_rss": chunk.start_rss,
        "peak_rss": chunk.peak_rss,
        "output_bytes": chunk_output_bytes(chunk),
    }


def chunk_state_delta(state: ChunkState) -> ChunkDelta:
    """A whole chunk state as a delta: it sets every field (all but `progress`, which only a
    running chunk's progress carries)."""
    return cast(ChunkDelta, dict(state))


def chunk_claimed_delta(
    *, index: int, attempts: int, worker: str, pid: int | None, at: str
) -> ChunkDelta:
    """A chunk a slot has just claimed (`at`: the claim's time, as `iso` writes it)."""
    return {
        "index": index,
        "status": Chunk.Status.RUNNING.value,
        "attempts": attempts,
        "worker": worker,
        "pid": pid,
        "queued_at": at,
        "started_at": at,
        "finished_at": None,
        # A new run: its resources and output start afresh.
        "cpu_user_s": None,
        "cpu_system_s": None,
        "start_rss": None,
        "peak_rss": None,
        "output_bytes": 0,
    }


def chunk_done_delta(
    *,
    index: int,
    attempts: int,
    worker: str,
    pid: int | None,
    claimed_at: datetime | None,
    started_at: datetime,
    finished_at: datetime,
    cpu_seconds: float,
    cpu_user_s: float | None,
    cpu_system_s: float | None,
    start_rss: int | None,
    peak_rss: int | None,
    output_bytes: int,
) -> ChunkDelta:
    """A chunk that has just finished, told as it ends (its outcome is recorded soon after,
    with the job's counts, and then told `recorded`): every field of its state, as
    chunk_state writes them."""
    return {
        "index": index,
        "status": Chunk.Status.DONE.value,
        "attempts": attempts,
        "worker": worker,
        "pid": pid,
        "queued_at": iso(claimed_at),
        "started_at": iso(started_at),
        "finished_at": iso(finished_at),
        "cpu_seconds": rounded(cpu_seconds),
        "error": "",
        "cpu_user_s": rounded(cpu_user_s),
        "cpu_system_s": rounded(cpu_system_s),
        "start_rss": start_rss,
        "peak_rss": peak_rss,
        "output_bytes": output_bytes,
        "recorded": False,
    }


def chunk_recorded_delta(index: int) -> ChunkDelta:
    """A chunk told done as it ended whose outcome is now stored."""
    return {"index": index, "status": Chunk.Status.DONE.value, "recorded": True}


def chunk_progress_delta(index: int, fraction: float) -> ChunkDelta:
    """How far a running chunk has got, 0..1."""
    return {"index": index, "status": Chunk.Status.RUNNING.value, "progress": round(fraction, 4)}


def active_job_state(state: JobState, live: LiveState) -> ActiveJobState:
    return {**state, **live}


def grid_pack(rows: Iterable[tuple[int, str, int]], total: int) -> str:
    """The snapshot's `grid` from (index, status, attempts) rows: one byte per chunk
    (its CHUNK_STATUS_CODES position, | GRID_RETRIED after more than one attempt), base64."""
    packed = bytearray(total)
    for index, status, attempts in rows:
        if 0 <= index < total:
            packed[index] = _STATUS_CODE[status] | (GRID_RETRIED if attempts > 1 else 0)
    return base64.b64encode(packed).decode("ascii")


def grid_unpack(grid: str) -> list[tuple[str, bool]]:
    """(status, retried) per chunk, by index: what `grid_pack` packed (for clients and tests)."""
    return [
        (CHUNK_STATUS_CODES[byte & GRID_STATUS_MASK], bool(byte & GRID_RETRIED))
        for byte in base64.b64decode(grid)
    ]


def job_snapshot_message(
    *,
    seq: int,
    job: JobState,
    grid: str,
    lanes: list[LaneState],
    peak: ChunkPeak | None,
    chunks: list[ChunkState],
    chunk_pages: int,
    live: LiveState | None,
) -> JobSnapshotMessage:
    return {
        "type": JOB_SNAPSHOT,
        "seq": seq,
        "job": job,
        "grid": grid,
        "lanes": lanes,
        "peak": peak,
        "chunks": chunks,
        "chunk_pages": chunk_pages,
        "live": live,
    }


def job_chunks_message(*, seq: int, page: int, chunks: list[ChunkState]) -> JobChunksMessage:
    return {"type": JOB_CHUNKS, "seq": seq, "page": page, "chunks": chunks}


def job_progress_message(
    *, seq: int, job: JobState | None, chunks: list[ChunkDelta]
) -> JobProgressMessage:
    return {"type": JOB_PROGRESS, "seq": seq, "job": job, "chunks": chunks}


def job_live_message(live: LiveState) -> JobLiveMessage:
    return {"type": JOB_LIVE, "live": live}


def chunk_output_message(
    *, job: int, index: int, offset: int, text: str, cut_bytes: int
) -> ChunkOutputMessage:
    return {
        "type": CHUNK_OUTPUT,
        "job": job,
        "index": index,
        "offset": offset,
        "text": text,
        "cut_bytes": cut_bytes,
    }


def job_resources_message(*, job: int, samples: list[ResourceSample]) -> JobResourcesMessage:
    return {"type": JOB_RESOURCES, "job": job, "samples": samples}


def resource_sample(*, process: str, at: str, cpu_percent: float, rss: int) -> ResourceSample:
    """A sample of `process` (`node|pid|boot`); its pid is read from the id."""
    parts = process.rsplit("|", 2)
    pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0
    return {
        "process": process,
        "pid": pid,
        "at": at,
        "cpu_percent": round(cpu_percent, 1),
        "rss": rss,
    }


def chunk_printed_event(message: ChunkOutputMessage) -> ChunkPrintedEvent:
    return {"type": EVENT_CHUNK_PRINTED, "message": message}


def job_sampled_event(message: JobResourcesMessage) -> JobSampledEvent:
    return {"type": EVENT_JOB_SAMPLED, "message": message}


def overview_state_message(jobs: JobsOverview, cluster: ClusterState) -> OverviewStateMessage:
    return {
        "type": OVERVIEW_STATE,
        "active": jobs["active"],
        "active_more": jobs["active_more"],
        "recent": jobs["recent"],
        "cluster": cluster,
    }


def error_message(text: str) -> ErrorMessage:
    return {"type": ERROR, "error": text}


def broker_state_message(*, available: bool) -> BrokerStateMessage:
    return {"type": BROKER_STATE, "available": available}


def study_run_state(point: ScalingPoint, run: Job | None) -> StudyRunState:
    """A level's figures, and its run (`run` None: not created yet)."""
    return {
        "parallelism": point.parallelism,
        "job": run.pk if run else None,
        "status": run.status if run else RUN_WAITING,
        "wall_seconds": rounded(point.wall_seconds),
        "speedup": rounded(point.speedup),
        "ideal_speedup": point.ideal_speedup,
        "efficiency": rounded(point.efficiency),
        "karp_flatt": rounded(point.karp_flatt),
        "amdahl_speedup": rounded(point.amdahl_speedup),
    }


def study_state(study: ScalingStudy, analysis: ScalingAnalysis, runs: dict[int, Job]) -> StudyState:
    """A study with the analysis of its runs' wall times (`runs` by parallelism)."""
    return {
        "id": study.pk,
        "url": reverse("jobs:study", args=[study.pk]),
        "status": study.status,
        "kind": study.kind,
        "params": study.params,
        "source_job": study.source_id,
        "levels": study.levels,
        "created_at": study.created_at.isoformat(),
        "finished_at": iso(study.finished_at),
        "error": study.error,
        "serial_fraction": rounded(analysis.serial_fraction),
        "max_speedup": rounded(analysis.max_speedup),
        "fit_note": analysis.fit_note,
        "runs": [study_run_state(point, runs.get(point.parallelism)) for point in analysis.points],
    }


def sweep_run_state(run: Job, result: str) -> SweepRunState:
    return {
        "index": run.sweep_index or 0,
        "job": run.pk,
        "url": reverse("jobs:detail", args=[run.pk]),
        "status": run.status,
        "params": run.params,
        "wall_seconds": rounded(run.wall_seconds),
        "cpu_seconds": rounded(run.cpu_seconds) or 0.0,
        "speedup": rounded(run.speedup),
        "result": result,
    }


def sweep_state(
    sweep: Sweep, *, owner: str, status: str, counts: dict[str, int], runs: list[SweepRunState]
) -> SweepState:
    return {
        "id": sweep.pk,
        "url": reverse("jobs:sweep", args=[sweep.pk]),
        "status": status,
        "kind": sweep.kind,
        "owner": owner,
        "params": sweep.base_params,
        "swept": sweep.swept,
        "grid": sweep.grid,
        "parallelism": sweep.parallelism,
        "chunk_time_limit_s": sweep.chunk_time_limit_s,
        "created_at": sweep.created_at.isoformat(),
        "counts": counts,
        "runs": runs,
    }


def upload_state(upload: Upload) -> UploadState:
    return {"id": upload.pk, "name": upload.name, "size": upload.size}


def upload_list_item_state(upload: Upload, *, jobs: int) -> UploadListItemState:
    return {**upload_state(upload), "created_at": upload.created_at.isoformat(), "jobs": jobs}


def job_changed_event(
    *, job_id: int, seq: int, job: JobState | None, chunks: list[ChunkDelta]
) -> JobChangedEvent:
    return {"type": EVENT_JOB_CHANGED, "job_id": job_id, "seq": seq, "job": job, "chunks": chunks}


def is_resync(content: object) -> TypeGuard[ResyncMessage]:
    """Whether a decoded client message is `{"type": "resync"}` (the only one there is)."""
    return isinstance(content, dict) and content.get("type") == RESYNC


def field_names(shape: type) -> frozenset[str]:
    """The keys a TypedDict declares (its own and inherited), for contract checks."""
    keys: frozenset[str] = shape.__required_keys__ | shape.__optional_keys__  # type: ignore[attr-defined]
    return keys


def conflict_body(message: str) -> ConflictBody:
    return {"detail": message, "status": [message]}
