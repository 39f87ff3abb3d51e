from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, FloatField, Q, TextField
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Cast, Lower

from jobs import scaling

# --- wall time, speedup, parallelism achieved, efficiency ---------------------------------------
# Defined once in jobs/scaling.py, in Python and in SQL. Wall seconds and speedup are stored
# generated columns of the job (Job.finished_wall_seconds and Job.finished_speedup, below),
# so that indexes serve the history's orders; the speedup's baseline and the processes used
# are stored when the job succeeds (jobs.engine.job_state.job_figures_settle). Job's
# properties apply the formulas to Python values; JobQuerySet.with_timings() gives the same
# figures as PostgreSQL computes them (tests/services/test_figures.py checks they agree).

_SUCCEEDED = Q(status="succeeded")


class JobQuerySet(models.QuerySet["Job"]):
    def with_timings(self) -> JobQuerySet:
        """`timed_wall_seconds`, `timed_speedup`, `timed_speedup_baseline`,
        `timed_parallelism_achieved` and `timed_efficiency` as PostgreSQL has them, for
        listing and exporting (the properties without `timed_` read them when present)."""
        return self.annotate(
            timed_wall_seconds=F("finished_wall_seconds"),
            timed_speedup=F("finished_speedup"),
            timed_speedup_baseline=scaling.job_speedup_baseline(
                speedup="finished_speedup", baseline_seconds="baseline_seconds", sql=True
            ),
            timed_parallelism_achieved=scaling.job_parallelism_achieved(
                cpu_seconds=F("cpu_seconds"), wall_seconds=F("finished_wall_seconds"), sql=True
            ),
            timed_efficiency=scaling.job_efficiency(
                speedup=F("finished_speedup"), processes_used=F("processes_used"), sql=True
            ),
        )


# The kind as history search reads it, ignoring case: what job_kind_trgm indexes.
JOB_KIND_FOLDED = Lower("kind")
# The parameters as PostgreSQL writes jsonb (`{"stop": 1000, "start": 0}`): what history
# search and the CSV export read, and what the search index holds; one expression, so that
# the queries match the index.
JOB_PARAMS_TEXT = Cast("params", TextField())


class Job(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Priority(models.IntegerChoices):
        """Which job's slots a worker takes first (jobs.engine.dispatch.broker_priority);
        within one job nothing changes. URGENT needs the `jobs.submit_urgent` permission,
        which staff grant in the admin (to a person or a group)."""

        LOW = 1
        NORMAL = 2
        HIGH = 3
        URGENT = 4

    ACTIVE_STATUSES = (Status.PENDING, Status.RUNNING)
    # `parallelism` of a job that uses every live worker process with its kind, counted
    # afresh while it runs (the reconciler tops it up as machines come and go).
    ALL_PROCESSES = 0

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    parallelism = models.PositiveIntegerField()
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    total_chunks = models.PositiveIntegerField(default=0)
    done_chunks = models.PositiveIntegerField(default=0)
    failed_chunks = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    cpu_seconds = models.FloatField(default=0.0)
    # CPU seconds its kind estimated for all its chunks when it was admitted
    # (jobs.services.admission); the quotas count the unfinished chunks' share of it.
    estimated_cpu_seconds = models.FloatField(null=True, blank=True)
    # The largest peak resident memory of any of its chunks' processes (bytes), for sorting.
    peak_rss = models.PositiveBigIntegerField(null=True, blank=True)
    # Per-chunk time limit this job asked for (seconds); None: the kind's limit.
    chunk_time_limit_s = models.PositiveIntegerField(null=True, blank=True)
    result_file = models.FileField(upload_to="results/%Y/%m/", blank=True)
    # Bumped by every change of the job row (under its lock), so live views can drop
    # states that reach them out of order from different worker processes.
    version = models.PositiveBigIntegerField(default=0)
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reruns"
    )
    # The code the job was submitted with, as the web process that created it had loaded
    # it (jobs.kinds.versions): the kind's distribution ("name version", "" when it comes
    # from no installed package), the sha256 of its source, and the Coreboard commit. ""
    # for jobs created before versions were kept. What each chunk ran with is on the chunk.
    kind_package = models.CharField(max_length=255, blank=True)
    kind_source = models.CharField(max_length=64, blank=True)
    coreboard_commit = models.CharField(max_length=40, blank=True)
    # What its chunks ran with (protocol.CodeRan list), stored when the job finishes
    # (jobs.engine.job_state.job_finished) so lists read it without grouping its chunks;
    # null while it runs (read from the chunks then) and for jobs that ended otherwise.
    code_ran = models.JSONField(null=True, blank=True)
    # A run of a scaling study: the study's work at one parallelism (jobs.services.studies).
    study = models.ForeignKey(
        "ScalingStudy", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    # A run a schedule started (jobs.services.schedules); kept when the schedule is deleted.
    schedule = models.ForeignKey(
        "Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # A run of a sweep (jobs.services.sweeps) and its place in the sweep's parameter sets
    # (0 to N-1): the history lists a sweep once, as its first job that exists.
    sweep = models.ForeignKey(
        "Sweep", null=True, blank=True, on_delete=models.CASCADE, related_name="runs"
    )
    sweep_index = models.PositiveIntegerField(null=True, blank=True)
    # Set when the job succeeds (jobs.engine.job_state.job_figures_settle), null before:
    # the worker processes that ran its done chunks (scaling.PROCESSES_USED), and the time
    # one process would take when a parallelism-1 run of the same kind and parameters
    # measured it (that run's wall seconds, and the run; null: the speedup's baseline is
    # the chunks' CPU time). A parallelism-1 run is its own baseline.
    processes_used = models.PositiveIntegerField(null=True, blank=True)
    baseline_seconds = models.FloatField(null=True, blank=True)
    baseline_job = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="baseline_for"
    )
    # Wall seconds and speedup as PostgreSQL computes them (GENERATED ALWAYS ... STORED),
    # so that B-tree indexes serve the history's duration and speedup orders. Both stay
    # null until finished_at is set (the speedup until the job succeeded): the engine's
    # updates of a running job (cpu_seconds, done_chunks, version on every batch) leave
    # them unchanged, so those updates stay heap-only (HOT) and touch no index. Read them
    # through the properties wall_seconds and speedup (or with_timings): after a save()
    # the instance's copies are stale.
    finished_wall_seconds = models.GeneratedField(
        expression=scaling.wall_seconds_sql(),
        output_field=FloatField(),
        db_persist=True,
        null=True,
    )
    finished_speedup = models.GeneratedField(
        expression=scaling.job_speedup(
            succeeded=_SUCCEEDED,
            baseline_seconds=F("baseline_seconds"),
            cpu_seconds=F("cpu_seconds"),
            wall_seconds=scaling.wall_seconds_sql(),
            sql=True,
        ),
        output_field=FloatField(),
        db_persist=True,
        null=True,
    )

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("submit_urgent", "Can submit urgent jobs")]
        constraints = [
            # One run per level: advancing a study twice cannot start a level twice.
            models.UniqueConstraint(
                fields=["study", "parallelism"],
                name="job_one_run_per_study_level",
                condition=Q(study__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["sweep", "sweep_index"],
                name="job_one_run_per_sweep_index",
                condition=Q(sweep__isnull=False),
            ),
            models.CheckConstraint(
                condition=Q(sweep__isnull=True, sweep_index__isnull=True)
                | Q(sweep__isnull=False, sweep_index__isnull=False),
                name="job_sweep_index_with_sweep",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(fields=["kind", "-created_at"], name="job_kind_created"),
            # History pages order by (created, id); with id in the index a deep page is an
            # index walk, not an incremental sort (tests/benchmarks/history.py).
            models.Index(fields=["owner", "-created_at", "-id"], name="job_owner_created_id"),
            models.Index(fields=["-created_at", "-id"], name="job_created_id"),
            # History search (selectors.job_history) looks for text in the kind and in the
            # parameters' JSON text (ILIKE and regular expressions), and for uploads by id:
            # pg_trgm serves the first, a B-tree the second (migration 0008).
            # On lower(kind), not kind: PostgreSQL would serve `kind = 'primes'` (the kind
            # filter) from a trigram index on kind too, much slower than job_kind_created.
            GinIndex(OpClass(JOB_KIND_FOLDED, name="gin_trgm_ops"), name="job_kind_trgm"),
            GinIndex(OpClass(JOB_PARAMS_TEXT, name="gin_trgm_ops"), name="job_params_trgm"),
            models.Index(KeyTransform("upload", "params"), name="job_params_upload"),
            # The history's duration and speedup orders (jobs.history.HISTORY_SORTS), both
            # directions, jobs without a duration last (migration 0009): a page is a walk
            # down one of these, the filters checked on the rows met; a filter that keeps
            # few rows is served by its own index and a sort of those few instead.
            *(
                models.Index(
                    F(column).desc(nulls_last=True) if down else F(column).asc(nulls_last=True),
                    F("id").desc(),
                    name=f"job_{short}_{'desc' if down else 'asc'}_id",
                )
                for column, short in (
                    ("finished_wall_seconds", "wall"),
                    ("finished_speedup", "speedup"),
                )
                for down in (True, False)
            ),
            # Counts a page's matches (Django's paginator) for the kind and status filters,
            # a person's own or everyone's, from the index alone: 21,000 of 100,000 jobs in
            # ~1 ms instead of ~15 reading their rows.
            models.Index(fields=["kind", "status", "owner"], name="job_kind_status_owner"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.kind}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return self.done_chunks / self.total_chunks if self.total_chunks else 0.0

    @property
    def wall_seconds(self) -> float | None:
        if "timed_wall_seconds" in self.__dict__:
            return self.__dict__["timed_wall_seconds"]  # type: ignore[no-any-return]
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def speedup(self) -> float | None:
        """scaling.SPEEDUP; `speedup_baseline` says what it was measured against."""
        if "timed_speedup" in self.__dict__:
            return self.__dict__["timed_speedup"]  # type: ignore[no-any-return]
        return scaling.job_speedup(  # type: ignore[no-any-return]
            succeeded=self.status == self.Status.SUCCEEDED,
            baseline_seconds=self.baseline_seconds,
            cpu_seconds=self.cpu_seconds,
            wall_seconds=self.wall_seconds,
            sql=False,
        )

    @property
    def speedup_baseline(self) -> scaling.Baseline | None:
        return scaling.job_speedup_baseline(  # type: ignore[no-any-return]
            speedup=self.speedup, baseline_seconds=self.baseline_seconds, sql=False
        )

    @property
    def parallelism_achieved(self) -> float | None:
        if "timed_parallelism_achieved" in self.__dict__:
            return self.__dict__["timed_parallelism_achieved"]  # type: ignore[no-any-return]
        return scaling.job_parallelism_achieved(  # type: ignore[no-any-return]
            cpu_seconds=self.cpu_seconds, wall_seconds=self.wall_seconds, sql=False
        )

    @property
    def efficiency(self) -> float | None:
        if "timed_efficiency" in self.__dict__:
            return self.__dict__["timed_efficiency"]  # type: ignore[no-any-return]
        return scaling.job_efficiency(  # type: ignore[no-any-return]
            speedup=self.speedup, processes_used=self.processes_used, sql=False
        )


def priority_name(value: int) -> str:
    """`Job.priority` as people write it (form, API, command line, messages): its choice's
    name in lower case (`"high"`)."""
    return Job.Priority(value).name.lower()


class ScalingStudy(models.Model):
    """The work of a finished job run again at parallelism 1, 2, 4, … one run at a time."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="scaling_studies"
    )
    # Kept when the source job is deleted: the study carries its own kind and parameters.
    source = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="scaling_studies"
    )
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    levels = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="study_owner_created"),
            models.Index(fields=["status"], name="study_status"),
        ]

    def __str__(self) -> str:
        return f"Scaling study {self.pk} ({self.kind}, {self.status})"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.RUNNING


class Sweep(models.Model):
    """N jobs of one kind, one per parameter set: a grid's cartesian product of values per
    parameter, or an explicit list of sets (jobs.services.sweeps). Admitted as one unit;
    its status is its runs' (jobs.selectors.sweeps), not stored."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sweeps"
    )
    kind = models.CharField(max_length=64)
    # The parameters every run shares, and the swept ones in the order they vary: a grid's
    # `{name: [values]}`; for a list of sets, the names whose values differ between sets.
    base_params = models.JSONField(default=dict)
    swept = models.JSONField(default=list)
    grid = models.JSONField(null=True, blank=True)
    parallelism = models.PositiveIntegerField()
    chunk_time_limit_s = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="sweep_owner_created")]

    def __str__(self) -> str:
        return f"Sweep {self.pk} ({self.kind})"


class Chunk(models.Model):
    class Status(models.TextChoices):
        # A chunk is claimed straight from pending to running under a lease
        # (jobs.engine.chunks); migration 0006 turned the old `queued` rows back to pending.
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    UNFINISHED_STATUSES = (Status.PENDING, Status.RUNNING)
    FINAL_STATUSES = (Status.DONE, Status.FAILED, Status.CANCELLED)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    spec = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Claims of this chunk by a worker process, and how many of those ended in an exception
    # from the kind's `run`; the difference is runs whose process was lost.
    attempts = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    # A claimed (running) chunk is leased to one process, which renews the lease while it
    # lives; an expired lease returns the chunk to pending (see jobs.engine.chunks).
    lease_owner = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # A chunk that raised waits until then before it may be claimed again (backoff).
    retry_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    # The code the worker that claimed the chunk last ran it with (its kind's source digest
    # and its Coreboard commit, as that worker process loaded them): what computed the
    # result, so nodes running different code show on the job's page.
    kind_source = models.CharField(max_length=64, blank=True)
    coreboard_commit = models.CharField(max_length=40, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cpu_seconds = models.FloatField(null=True, blank=True)
    # User and system CPU time of the chunk's run (their sum is cpu_seconds).
    cpu_user_s = models.FloatField(null=True, blank=True)
    cpu_system_s = models.FloatField(null=True, blank=True)
    # Resident memory of its process when the chunk started, and the peak while it ran (bytes).
    start_rss = models.PositiveBigIntegerField(null=True, blank=True)
    peak_rss = models.PositiveBigIntegerField(null=True, blank=True)
    # The last COREBOARD_CHUNK_OUTPUT_BYTES of what the chunk wrote (stdout, stderr, log
    # records), and how many bytes before them were cut.
    output = models.TextField(blank=True, default="")
    output_cut_bytes = models.PositiveBigIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            models.UniqueConstraint(fields=["job", "index"], name="chunk_unique_index_per_job")
        ]
        indexes = [
            models.Index(fields=["job", "status", "index"], name="chunk_job_status_index"),
            models.Index(
                fields=["lease_expires_at"],
                name="chunk_running_lease",
                condition=Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"Chunk {self.job_id}/{self.index} ({self.status})"


class ProcessSample(models.Model):
    """One worker process's CPU use and resident memory while it ran one of a job's chunks,
    sampled about once a second: the job page's CPU and memory timeline."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="process_samples")
    # The worker process (`node|pid|boot`, as in the worker registry).
    process = models.CharField(max_length=255)
    at = models.DateTimeField()
    cpu_percent = models.FloatField()
    rss = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["job", "at"]
        indexes = [models.Index(fields=["job", "at"], name="process_sample_job_at")]

    def __str__(self) -> str:
        return f"Sample of job {self.job_id} by {self.process} at {self.at:%H:%M:%S}"


class Upload(models.Model):
    """A file a person uploaded for a job kind to read (e.g. wordcount's text)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    file = models.FileField(upload_to="uploads/%Y/%m/")
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Upload {self.pk} ({self.name})"


class UploadReservation(models.Model):
    """Bytes an upload being stored holds against its owner's quota (COREBOARD_QUOTA_UPLOADS,
    COREBOARD_QUOTA_UPLOAD_BYTES) while its file is written.

    jobs.services.uploads reserves under a per-owner lock (count, then insert), writes the
    file, then stores the Upload row and deletes the reservation in one transaction, or
    deletes it when the write fails; one left by a crash stops counting after an hour.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    size = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.size:,} bytes reserved by user {self.owner_id}"


class NotificationSettings(models.Model):
    """What a person wants to hear about when their jobs end, and where.

    The e-mail address is stored here, not read from auth_user, because the worker that
    sends it logs in as a role that cannot read auth_user (launcher.least_privilege).
    Empty `email`: no e-mail. The events apply to every channel (e-mail and each webhook).
    """

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_settings"
    )
    email = models.EmailField(blank=True)
    on_succeeded = models.BooleanField(default=False)
    on_failed = models.BooleanField(default=True)
    on_cancelled = models.BooleanField(default=False)
    # Only jobs that ran longer than this (wall minutes, from start to end); 0: every job.
    min_minutes = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"Notification settings of user {self.owner_id}"

    def wants(self, status: str) -> bool:
        return bool(getattr(self, f"on_{status}", False))


class Webhook(models.Model):
    """A URL that gets a signed JSON POST when one of its owner's jobs ends.

    The secret signs each body (HMAC-SHA256, jobs.engine.notify); it is shown once, when the
    hook is made, and kept to sign with.
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhooks"
    )
    url = models.URLField(max_length=2000)
    secret = models.CharField(max_length=128)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"Webhook {self.pk} ({self.url})"


class NotificationDelivery(models.Model):
    """One notification to send (the outbox) and its delivery log.

    Written in the same transaction as the job's final state (jobs.engine.job_state), at
    most one per (webhook or e-mail, job, event: its end) by the unique constraints, then sent by a
    worker (jobs.engine.notify). `delivery_id` is sent with every attempt: a receiver drops
    a POST whose id it has seen (delivery is at least once, see docs/decisions.md).
    A test delivery ("send test") has no job.
    """

    class Channel(models.TextChoices):
        EMAIL = "email"
        WEBHOOK = "webhook"

    class Event(models.TextChoices):
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TEST = "test"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    delivery_id = models.UUIDField(unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.CharField(max_length=16, choices=Event.choices)
    # Which ending of the job: a failed job that is retried and ends again is a new event.
    job_finished_at = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    webhook = models.ForeignKey(
        Webhook, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The address at the time of the event (e-mail only).
    email = models.EmailField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # Due for its next attempt at (null once it is sent or given up); an outbox relay on
    # the reconciler re-sends the task of one overdue (its message was lost).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The process sending it holds it until then (a lease: a second message for the same
    # delivery waits instead of sending twice at once).
    sending_until = models.DateTimeField(null=True, blank=True)
    sending_pid = models.PositiveIntegerField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_response = models.TextField(blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["webhook", "job", "event", "job_finished_at"],
                condition=Q(job__isnull=False, webhook__isnull=False),
                name="notification_once_per_hook_job_event",
            ),
            models.UniqueConstraint(
                fields=["owner", "job", "event", "job_finished_at"],
                condition=Q(job__isnull=False, channel="email"),
                name="notification_once_per_email_job_event",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="notification_pending_due",
            ),
        ]

    def __str__(self) -> str:
        return f"Delivery {self.delivery_id} ({self.channel}, {self.event})"


class Schedule(models.Model):
    """A person's job saved to run again and again: its kind and parameters here, its timing
    (cron expression or interval, time zone, enabled) in the django-celery-beat PeriodicTask
    it owns, which celery beat (jobs.beat) reads. One fact, one place: whether a schedule is
    enabled and when it runs next are the PeriodicTask's, never copied here.

    jobs.services.schedules writes both together; a fire runs on a worker
    (`schedule_fire`), admitted like any job with `by=None` (quotas, no rate).
    """

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules"
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=64)
    params = models.JSONField(default=dict)
    parallelism = models.PositiveIntegerField(null=True, blank=True)
    chunk_time_limit_s = models.PositiveIntegerField(null=True, blank=True)
    # Skip a fire while the previous run of this schedule is still pending or running.
    skip_if_active = models.BooleanField(default=False)
    # The job it was saved from ("Schedule this"), if any.
    source = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="schedules_saved"
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask", on_delete=models.CASCADE, related_name="coreboard"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The last fire's outcome, as the worker recorded it: when it fired, and why it made no
    # run if it did not (a quota, a parameter no longer valid, the previous run still active).
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # The Celery message id of the last fire handled: a redelivered message (a worker lost
    # after the fire committed) makes no second run.
    last_fire_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="schedule_owner_created")]

    def __str__(self) -> str:
        return f"Schedule {self.pk} ({self.name})"
