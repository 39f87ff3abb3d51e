"""Every setting Coreboard reads from its environment, declared once.

Each `register(...)` below names one environment variable: its type, default, unit, lower
limit, whether every worker machine must share it, whether it is a secret, its section and
a one-line doc. From this table

- `project/settings.py` reads every knob (and derives Django's and Celery's settings),
- the launcher (`make run`, `make worker`, the join command) reads its own knobs, and the
  join command carries exactly the entries marked `shared`,
- `docs/configuration.md` is generated (`python manage.py reference`).

So a new setting is one `register(...)` here, plus the code that uses it.

Names. A Django setting has the name of its environment variable, and its value is in the
unit that name says. Coreboard's own names (`COREBOARD_*`) end in their unit: durations in
`_MS` (whole milliseconds) or `_S` (seconds), never `_SECONDS`; sizes in `_BYTES`; days in
`_DAYS`. Names Django or a convention already owns (`SECURE_HSTS_SECONDS`,
`DB_CONN_MAX_AGE`) keep their usual spelling. A renamed variable keeps its old name as an
alias: still read, listed as deprecated in the reference.

Values. An empty value counts as unset (the default applies). A value that does not parse,
or is below its minimum, stops the process with a message naming the variable and the rule.

Nothing here imports Django or anything heavy: the launcher reads this table before any
settings exist.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["str", "bool", "int", "float", "list", "mapping"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingError(RuntimeError):
    """An environment variable that cannot be used; the message names it and the rule."""


@dataclass(frozen=True)
class Setting:
    """One environment variable: what it is, what it defaults to, who must share it."""

    name: str
    kind: Kind
    default: Any
    doc: str
    section: str
    unit: str = ""
    minimum: int | None = None
    # Every worker machine must run with the main machine's value (the join command
    # carries it): the engine's timings, the kinds and their queues.
    shared: bool = False
    # Never printed in full (a password, a key, a URL with credentials).
    secret: bool = False
    # Older names, still read when the new one is not set.
    aliases: tuple[str, ...] = ()
    # How the reference states a default computed at run time (the default is then "").
    default_doc: str = ""
    # Further rule on the parsed value: returns what is wrong, or "" when it holds.
    check: Callable[[Any], str] | None = None

    def parse(self, raw: str, *, source: str) -> Any:
        """The value of `raw` (read from the variable `source`), checked."""
        value = _PARSERS[self.kind](raw, source)
        if self.minimum is not None and value < self.minimum:
            raise SettingError(
                f"environment variable {source} must be >= {self.minimum}, got {value}"
            )
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise SettingError(f"environment variable {source}: {problem}")
        return value

    def read(self, environ: Mapping[str, str]) -> Any:
        """This setting's value in `environ`: its own name first, then its aliases."""
        for source in (self.name, *self.aliases):
            raw = environ.get(source, "")
            if raw.strip():
                return self.parse(raw, source=source)
        return self.default() if callable(self.default) else self.default

    def given_in(self, environ: Mapping[str, str]) -> str:
        """The raw value `environ` gives it (under its name or an alias), or ""."""
        for source in (self.name, *self.aliases):
            raw = environ.get(source, "")
            if raw.strip():
                return raw
        return ""


def _parse_str(raw: str, source: str) -> str:
    return raw


def _parse_bool(raw: str, source: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise SettingError(f"environment variable {source} must be a boolean, got {raw!r}")


def _parse_int(raw: str, source: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingError(
            f"environment variable {source} must be an integer, got {raw!r}"
        ) from None


def _parse_float(raw: str, source: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingError(f"environment variable {source} must be a number, got {raw!r}") from None


def _parse_list(raw: str, source: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_mapping(raw: str, source: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for item in _parse_list(raw, source):
        key, _, value = item.partition("=")
        if not key.strip() or not value.strip():
            raise SettingError(f"environment variable {source}: {item!r} is not key=value")
        mapping[key.strip()] = value.strip()
    return mapping


_PARSERS: dict[Kind, Callable[[str, str], Any]] = {
    "str": _parse_str,
    "bool": _parse_bool,
    "int": _parse_int,
    "float": _parse_float,
    "list": _parse_list,
    "mapping": _parse_mapping,
}


def _networks(value: list[str]) -> str:
    for network in value:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            return f"{network!r} is not an address or network"
    return ""


def _niceness(value: int) -> str:
    return "" if value <= 19 else "must be at most 19 (Linux's lowest priority)"


def _compare_runs_max(value: int) -> str:
    # Each run brings its chunks' times and its task stream: a page of hundreds would crawl.
    return "" if value <= 50 else "must be at most 50 (each run brings its chunks' times)"


def _header_and_value(value: list[str]) -> str:
    return "" if len(value) in (0, 2) else "must be 'Header-Name,value'"


# --- The table ---------------------------------------------------------------------------

SETTINGS: dict[str, Setting] = {}
_ALIASES: dict[str, str] = {}

# Sections, in the order the reference lists them.
SECTIONS = {
    "run": "Running it (`make run`)",
    "stores": "Data stores",
    "cluster": "Cluster: more machines",
    "workers": "Workers (`make worker`)",
    "engine": "Execution engine",
    "jobs": "Jobs, uploads and quotas",
    "web": "Web pages, API and websockets",
    "notify": "Notifications (e-mail and webhooks)",
    "security": "Security",
    "django": "Django",
}


def register(
    name: str,
    kind: Kind,
    default: Any,
    doc: str,
    *,
    section: str,
    unit: str = "",
    minimum: int | None = None,
    shared: bool = False,
    secret: bool = False,
    aliases: tuple[str, ...] = (),
    default_doc: str = "",
    check: Callable[[Any], str] | None = None,
) -> Setting:
    """Declare one environment variable (once: a second declaration of a name is a bug)."""
    if section not in SECTIONS:
        raise ValueError(f"{name}: unknown section {section!r}")
    for taken in (name, *aliases):
        if taken in SETTINGS or taken in _ALIASES:
            raise ValueError(f"setting {taken} is declared twice")
    setting = Setting(
        name=name,
        kind=kind,
        default=default,
        doc=doc,
        section=section,
        unit=unit,
        minimum=minimum,
        shared=shared,
        secret=secret,
        aliases=aliases,
        default_doc=default_doc,
        check=check,
    )
    SETTINGS[name] = setting
    for alias in aliases:
        _ALIASES[alias] = name
    return setting


# Running it (`make run`)
register("PORT", "int", 8000, "daphne's port", section="run", minimum=1)
register(
    "COREBOARD_BIND",
    "str",
    "127.0.0.1",
    "the address daphne listens on; another than loopback wants `ALLOWED_HOSTS` and TLS",
    section="run",
)
register(
    "COREBOARD_WORKER_CONCURRENCY",
    "int",
    lambda: os.cpu_count() or 1,
    "worker processes `make run` starts (`0`: no local worker, a web-only main machine), "
    "and `make worker`'s when `CONCURRENCY=` is not given",
    section="run",
    minimum=0,
    default_doc="number of cores",
)
register(
    "COREBOARD_STOP_WAIT_S",
    "float",
    60.0,
    "how long Ctrl-C of `make run` waits for running chunks (a warm shutdown) before a cold one",
    section="run",
    unit="s",
    minimum=0,
    aliases=("COREBOARD_STOP_WAIT_SECONDS",),
)
register(
    "COREBOARD_SUPERVISE_MAX_CRASHES",
    "int",
    5,
    "`make run` restarts a component that dies, with backoff; this many deaths within a "
    "minute stop the stack",
    section="run",
    minimum=1,
)
register(
    "COREBOARD_VAR_DIR",
    "str",
    "",
    "where `make run` keeps the embedded services' data, the secrets and (by default) the media",
    section="run",
    default_doc="`var` in the checkout",
)
register(
    "COREBOARD_OS_USER",
    "str",
    "coreboard",
    "the unprivileged user Redis, daphne and Celery run as when `make run` runs as root "
    "(created if missing)",
    section="run",
)
register(
    "COREBOARD_ADMIN_USER", "str", "admin", "the admin account `make run` ensures", section="run"
)
register(
    "COREBOARD_ADMIN_PASSWORD",
    "str",
    "",
    "its password; when set, an existing account's password is reset to it",
    section="run",
    secret=True,
    default_doc="generated once into `var/secrets/admin-password`",
)

# Data stores
register(
    "DATABASE_URL",
    "str",
    "",
    "PostgreSQL to use; when set, no private cluster is started",
    section="stores",
    shared=True,
    secret=True,
    default_doc="embedded cluster under `var/pg`",
)
register(
    "REDIS_URL",
    "str",
    "",
    "Redis to use (db 0: Celery broker, db 1: channel layer, db 2: cache); when set, no "
    "private Redis is started",
    section="stores",
    shared=True,
    secret=True,
    default_doc="embedded server under `var/redis`",
)
register(
    "COREBOARD_REDIS_TIMEOUT_MS",
    "int",
    500,
    "every Redis call of the web and the engine gives up after this long (connect and "
    "reply); a timeout makes that process skip Redis calls until it answers a PING again",
    section="stores",
    unit="ms",
    minimum=50,
    shared=True,
)
register(
    "COREBOARD_PG_PORT",
    "int",
    54329,
    "port of the embedded PostgreSQL; unset, `manage.py`, `make worker` and `make run` use the "
    "port this checkout's last `make run` used (`var/run/ports.json`), then the default",
    section="stores",
)
register(
    "COREBOARD_REDIS_PORT",
    "int",
    56379,
    "port of the embedded Redis; unset, the port this checkout's last `make run` used "
    "(`var/run/ports.json`), then the default",
    section="stores",
)
register(
    "COREBOARD_PG_BIN",
    "str",
    "",
    "PostgreSQL's server binaries",
    section="stores",
    default_doc="newest `/usr/lib/postgresql/*/bin`",
)
register(
    "COREBOARD_PG_OS_USER",
    "str",
    "postgres",
    "the user the private cluster runs as when started by root",
    section="stores",
)
register(
    "COREBOARD_REDIS_SERVER",
    "str",
    "",
    "the redis-server binary the embedded Redis runs",
    section="stores",
    default_doc="`redis-server` on the `PATH`",
)
register(
    "COREBOARD_PG_MAX_CONNECTIONS",
    "int",
    0,
    "`max_connections` of the embedded PostgreSQL (a cluster needs more); `0`: "
    "PostgreSQL's own (`100`)",
    section="stores",
    minimum=0,
)
register(
    "DB_CONN_MAX_AGE",
    "int",
    60,
    "how long a database connection is reused",
    section="stores",
    unit="s",
    minimum=0,
)
register(
    "COREBOARD_DB_LOCK_TIMEOUT_MS",
    "int",
    5000,
    "longest any database session waits for a lock; a worker then tries again (for up to "
    'the idle timeout plus this), a page or API call answers 503 "busy" with `Retry-After`',
    section="stores",
    unit="ms",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
    "int",
    20_000,
    "PostgreSQL ends a session idle inside a transaction this long, releasing its locks (a "
    "machine lost mid-transaction); `combine` runs inside one, so keep it quicker than this",
    section="stores",
    unit="ms",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_DB_KEEPALIVE_S",
    "int",
    10,
    "TCP keepalive of every database connection, on both ends (probes every half of it, 3 "
    "probes), and unacknowledged writes give up after 2.5 times it",
    section="stores",
    unit="s",
    minimum=1,
    shared=True,
)

# Cluster: more machines
register(
    "COREBOARD_LISTEN",
    "str",
    "",
    "an address of this machine the embedded PostgreSQL and Redis also listen on, for "
    "worker machines; `make run` then writes the join command to `var/join-command`",
    section="cluster",
    default_doc="none: 127.0.0.1 only",
)
register(
    "COREBOARD_LISTEN_NETWORK",
    "str",
    "",
    "the network (CIDR) worker machines may log in to PostgreSQL from",
    section="cluster",
    default_doc="the network of `COREBOARD_LISTEN`'s interface",
)
register(
    "COREBOARD_PG_SSL_CERT",
    "str",
    "",
    "certificate: with the key, the embedded PostgreSQL runs with `ssl=on` and workers must "
    "use TLS",
    section="cluster",
)
register("COREBOARD_PG_SSL_KEY", "str", "", "the certificate's private key", section="cluster")

# Workers (`make worker`)
register(
    "COREBOARD_WORKER_NODE",
    "str",
    "",
    "`make worker`'s node name (its identity in the cluster) when `NODE=` is not given",
    section="workers",
    default_doc="`coreboard-<var/node-id>@<host>`",
)
register(
    "COREBOARD_WORKER_QUEUES",
    "str",
    "",
    "`make worker`'s Celery queues (comma-separated) when `QUEUES=` is not given",
    section="workers",
    default_doc="the default queue",
)
register(
    "COREBOARD_WORKER_LABELS",
    "list",
    [],
    "free-form tags a worker shows on the overview (e.g. `gpu,rack-2`); `LABELS=` of `make worker`",
    section="workers",
)
register(
    "COREBOARD_WORKER_KINDS",
    "list",
    [],
    "kinds this worker advertises and runs (a narrower set than it has; an unknown name "
    "stops the worker with a message naming it)",
    section="workers",
    default_doc="all registered",
)
register(
    "COREBOARD_CODE_VERSION",
    "str",
    "",
    "the commit this machine's code comes from, shown on its node card and compared with "
    'the web\'s ("code differs"); `make run` and `make worker` record it at start (a '
    "`REVISION` file, else `git`, read by whoever runs `make`), so the services need no git "
    "of their own; set it where neither exists",
    section="workers",
    default_doc="recorded at start",
)
register(
    "COREBOARD_SKIP_PREFLIGHT",
    "bool",
    False,
    "`1`: a worker starts without its checks (schema, `MEDIA_ROOT` marker, node name, "
    "clock); emergencies only (its name is still leased: one held by a live worker of "
    "this machine stops it at its first beat)",
    section="workers",
)
register(
    "COREBOARD_TASK_EVENTS",
    "bool",
    False,
    "send Celery task events (`worker_send_task_events`, `task_send_sent_event`), for "
    "Flower or `celery events`",
    section="workers",
)
register(
    "COREBOARD_KINDS_DIR",
    "str",
    "",
    "a folder of job-kind modules (`*.py` files and packages), imported by web and workers",
    section="workers",
    # Workers must load the kinds the web process offers: the join command carries it.
    shared=True,
    default_doc="`kinds/` in the project folder",
)
register(
    "COREBOARD_RELOAD",
    "bool",
    True,
    "`make run` restarts the workers and the web process when a kind's source changes "
    "(development); `0` in production",
    section="run",
)
register(
    "COREBOARD_JOB_KINDS",
    "list",
    [],
    "modules that register extra job kinds, added to the built-in ones",
    section="workers",
    shared=True,
    default_doc="none (the built-in kinds)",
)
register(
    "COREBOARD_KIND_QUEUES",
    "mapping",
    {},
    "routing of kinds to broker queues, `kind=queue,...` (e.g. `mandelbrot=gpu`); a worker "
    "consumes the queues of the kinds it has",
    section="workers",
    shared=True,
    default_doc="none: `coreboard.kind.<kind>`",
)

# Execution engine: slots, leases, the reconciler (every machine must agree on these).
register(
    "COREBOARD_CHUNK_TIME_LIMIT_S",
    "int",
    600,
    "how long one chunk may run at most (a kind's `time_limit_s` or a job's chunk time "
    "limit may ask for less); past it the worker stops the chunk's process and the chunk "
    "fails for good. Celery's task time limits are set above it, as a backstop",
    section="engine",
    unit="s",
    minimum=1,
    shared=True,
    aliases=("COREBOARD_CHUNK_TIME_LIMIT",),
)
register(
    "COREBOARD_KILL_GRACE_MS",
    "int",
    2000,
    "a chunk stopped by a cancel or its time limit gets SIGTERM, then SIGKILL after this long",
    section="engine",
    unit="ms",
    minimum=100,
    shared=True,
)
register(
    "COREBOARD_CHUNK_CAPTURE",
    "bool",
    True,
    "capture each chunk's output (stdout, stderr, log records) and measure its memory and "
    "CPU time; off only to measure what capturing costs",
    section="engine",
    shared=True,
)
register(
    "COREBOARD_CHUNK_OUTPUT_BYTES",
    "int",
    65_536,
    "how much of each chunk's output is kept: its last this many bytes, with a marker "
    "saying how much was cut",
    section="engine",
    unit="bytes",
    minimum=1024,
    shared=True,
)
register(
    "COREBOARD_SLOT_MAX_S",
    "int",
    60,
    "a slot gives up its process (re-queues itself) at least this often",
    section="engine",
    unit="s",
    minimum=1,
    shared=True,
    aliases=("COREBOARD_SLOT_MAX_SECONDS",),
)
register(
    "COREBOARD_SLOT_SLICE_MS",
    "int",
    500,
    "a slot yields its process to waiting messages after this much work (fair share)",
    section="engine",
    unit="ms",
    minimum=10,
    shared=True,
)
register(
    "COREBOARD_PRIORITY_AGING_S",
    "int",
    30,
    "a slot waiting this long in its queue moves up one priority step, and again after "
    "each further period (no job starves behind higher ones); 0: never",
    section="engine",
    unit="s",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_OWNER_MAX_SLOTS",
    "int",
    0,
    "most worker processes one person's jobs may hold at once; `0`: no limit",
    section="engine",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_CHUNK_NICE",
    "int",
    10,
    "CPU niceness added to each worker process that runs chunks (`0`: none, `19`: the "
    "lowest priority), so that the web server, PostgreSQL, Redis and the worker's own main "
    "process never wait for a core behind chunks",
    section="engine",
    minimum=0,
    shared=True,
    check=_niceness,
)
register(
    "COREBOARD_BATCH_TARGET_MS",
    "int",
    100,
    "a slot claims as many chunks at once as fit in about this much work",
    section="engine",
    unit="ms",
    minimum=1,
    shared=True,
)
register(
    "COREBOARD_FLUSH_MS",
    "int",
    250,
    "while a batch runs, its outcomes so far are written at most this often",
    section="engine",
    unit="ms",
    minimum=1,
    shared=True,
)
register(
    "COREBOARD_LEASE_MS",
    "int",
    10_000,
    "lease of a claimed chunk, renewed every second; once expired the chunk runs again elsewhere",
    section="engine",
    unit="ms",
    minimum=1000,
    shared=True,
)
register(
    "COREBOARD_RECONCILE_MS",
    "int",
    1000,
    "how often the reconciler returns expired leases and re-issues missing slots",
    section="engine",
    unit="ms",
    minimum=100,
    shared=True,
)
register(
    "COREBOARD_CANCEL_POLL_MS",
    "int",
    1000,
    "how often a running chunk checks for cancellation",
    section="engine",
    unit="ms",
    minimum=10,
    shared=True,
)
register(
    "COREBOARD_PROGRESS_INTERVAL_MS",
    "int",
    500,
    "how often a running chunk reports its progress",
    section="engine",
    unit="ms",
    minimum=10,
    shared=True,
)
register(
    "COREBOARD_PUBLISH_INTERVAL_MS",
    "int",
    25,
    "at most how often each process sends its coalesced live events (an event that finds "
    "the last send older than this goes at once)",
    section="engine",
    unit="ms",
    minimum=10,
    shared=True,
)
register(
    "COREBOARD_CHUNK_MAX_RETRIES",
    "int",
    2,
    "retries (with backoff: 1 s, 2 s, 4 s, ... up to 30 s) of a chunk that raised, before "
    "the job fails",
    section="engine",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_CHUNK_MAX_ATTEMPTS",
    "int",
    5,
    "runs of one chunk whose worker process was lost before it is failed (a chunk that "
    "kills its process cannot loop forever)",
    section="engine",
    minimum=1,
    shared=True,
)

# Jobs, uploads and quotas
register(
    "COREBOARD_DEFAULT_PARALLELISM",
    "int",
    0,
    "worker processes a job uses at once when it does not say; `0`: every live worker "
    "process that has its kind, counted while it runs",
    section="jobs",
    minimum=0,
)
register(
    "COREBOARD_MAX_PARALLELISM",
    "int",
    1024,
    "upper limit a job may ask for",
    section="jobs",
    minimum=1,
)
register(
    "COREBOARD_UPLOAD_MAX_BYTES",
    "int",
    200 * 1024 * 1024,
    "largest upload; bigger bodies get 413 before Django reads them",
    section="jobs",
    unit="bytes",
    minimum=1,
    default_doc="`209715200` (200 MiB)",
)
register(
    "COREBOARD_QUOTA_SCHEDULES",
    "int",
    20,
    "schedules per person (enabled or not)",
    section="jobs",
    minimum=0,
)
register(
    "COREBOARD_SCHEDULE_MIN_INTERVAL_S",
    "int",
    60,
    "shortest interval a schedule may have, in seconds (a cron expression fires at most "
    "once a minute)",
    section="jobs",
    minimum=1,
)
register(
    "COREBOARD_SWEEP_MAX_RUNS",
    "int",
    100,
    "jobs one sweep may create (its grid's product, or its list's sets); each also counts "
    "against COREBOARD_QUOTA_ACTIVE_JOBS and the other quotas, summed",
    section="jobs",
    minimum=1,
)
register(
    "COREBOARD_QUOTA_ACTIVE_JOBS",
    "int",
    10,
    "active (pending or running) jobs per person",
    section="jobs",
    minimum=1,
)
register(
    "COREBOARD_QUOTA_CHUNKS",
    "int",
    200_000,
    "chunks waiting or running per person, across active jobs",
    section="jobs",
    minimum=1,
)
register(
    "COREBOARD_QUOTA_CHUNK_S",
    "int",
    86_400,
    "estimated CPU seconds per person across active jobs (each kind's estimate; a kind "
    "that cannot estimate counts chunks × its chunk time limit); 86,400 is one CPU-day",
    section="jobs",
    unit="s",
    minimum=1,
    aliases=("COREBOARD_QUOTA_CHUNK_SECONDS",),
)
register(
    "COREBOARD_QUOTA_JOB_S",
    "int",
    3_600,
    "CPU seconds one job may ask for, by its kind's estimate (a kind without one is counted "
    "by `COREBOARD_QUOTA_CHUNK_S` only); 3,600 is one CPU-hour",
    section="jobs",
    unit="s",
    minimum=1,
)
register(
    "COREBOARD_SPLIT_CPU_MS",
    "int",
    1000,
    "CPU time a kind's `split` may take in the web process when a job is previewed or "
    "created; past it the split is stopped and the request refused (a split must be "
    "arithmetic on the parameters: the biggest built-in ones, 100,000 chunks, take about "
    "0.25 s)",
    section="jobs",
    unit="ms",
    minimum=1,
)
register(
    "COREBOARD_QUOTA_UPLOADS", "int", 100, "uploads kept per person", section="jobs", minimum=1
)
register(
    "COREBOARD_QUOTA_UPLOAD_BYTES",
    "int",
    1024 * 1024 * 1024,
    "total size of the uploads kept per person",
    section="jobs",
    unit="bytes",
    minimum=1,
    default_doc="`1073741824` (1 GiB)",
)

# Web pages, API and websockets
for _rate_name, _rate, _what in (
    ("COREBOARD_RATE_JOB_CREATE", "10/minute", "job creation and scaling studies"),
    ("COREBOARD_RATE_JOB_PREVIEW", "120/minute", "job previews"),
    ("COREBOARD_RATE_JOB_ACTION", "30/minute", "retries and reruns"),
    ("COREBOARD_RATE_UPLOAD", "20/minute", "uploads"),
):
    register(
        _rate_name,
        "str",
        _rate,
        f"rate limit of {_what} per person, one budget for the API and the pages (DRF "
        "rates: `N/second`, `minute`, `hour`, `day`); beyond it 429 with `Retry-After`",
        section="web",
    )
register(
    "COREBOARD_MAX_SOCKETS_PER_USER",
    "int",
    20,
    "open websockets per person (per daphne process)",
    section="web",
    minimum=1,
)
register(
    "COREBOARD_SOCKET_BACKLOG_BYTES",
    "int",
    262144,
    "unsent bytes a websocket may buffer for a client that reads slowly; beyond it the "
    "socket gets no updates until its client catches up, then a fresh snapshot",
    section="web",
    unit="bytes",
    minimum=1024,
)
register(
    "COREBOARD_SOCKET_SESSION_CHECK_MS",
    "int",
    2000,
    "how often a websocket checks that its session still holds",
    section="web",
    unit="ms",
    minimum=100,
)
register(
    "COREBOARD_EXPORTS_PER_PERSON",
    "int",
    2,
    "history CSV exports one person may have streaming at once (every web process "
    "together); one more is refused with 429 until one ends",
    section="web",
    minimum=1,
)
register(
    "COREBOARD_COMPARE_RUNS_MAX",
    "int",
    8,
    "jobs one compare page shows side by side (chosen in history); more are refused with "
    "a message naming the limit",
    section="web",
    minimum=2,
    check=_compare_runs_max,
)
register(
    "COREBOARD_EXPORTS_AT_ONCE",
    "int",
    1,
    "history CSV exports whose rows PostgreSQL writes at the same time, everybody's "
    "together; the others wait their turn (their download starts when one ends), so "
    "exports never take the cores that other people's pages need",
    section="web",
    minimum=1,
)
# Notifications (e-mail and webhooks); workers send them, so they share these.
register(
    "COREBOARD_PUBLIC_URL",
    "str",
    "http://localhost:8000",
    "the site's address as people reach it: the job links in notifications start with it",
    section="notify",
    shared=True,
)
register(
    "EMAIL_BACKEND",
    "str",
    "django.core.mail.backends.console.EmailBackend",
    "Django's mail backend; the console one prints each e-mail in the worker's log, "
    "`django.core.mail.backends.smtp.EmailBackend` sends it through `EMAIL_HOST`",
    section="notify",
    shared=True,
)
register("EMAIL_HOST", "str", "localhost", "the SMTP server", section="notify", shared=True)
register(
    "EMAIL_PORT", "int", 25, "the SMTP server's port", section="notify", minimum=1, shared=True
)
register("EMAIL_HOST_USER", "str", "", "the SMTP login", section="notify", shared=True)
register(
    "EMAIL_HOST_PASSWORD",
    "str",
    "",
    "the SMTP password",
    section="notify",
    shared=True,
    secret=True,
)
register("EMAIL_USE_TLS", "bool", False, "SMTP with STARTTLS", section="notify", shared=True)
register("EMAIL_USE_SSL", "bool", False, "SMTP over TLS (port 465)", section="notify", shared=True)
register(
    "EMAIL_TIMEOUT",
    "int",
    10,
    "longest wait for the SMTP server (a failure is retried like a webhook's)",
    section="notify",
    unit="s",
    minimum=1,
    shared=True,
)
register(
    "DEFAULT_FROM_EMAIL",
    "str",
    "coreboard@localhost",
    "the sender of notification e-mails",
    section="notify",
    shared=True,
)
register(
    "COREBOARD_WEBHOOK_ALLOW_PRIVATE",
    "bool",
    False,
    "allow webhook URLs whose host is (or resolves to) a loopback, private, link-local or "
    "otherwise non-public address; off, people cannot make the workers call the machines "
    "behind them (SSRF). Turn on only when every person may reach the internal network",
    section="notify",
    shared=True,
)
register(
    "COREBOARD_WEBHOOK_TIMEOUT_S",
    "int",
    10,
    "longest wait to connect to a webhook and for each read of its answer; no redirect is followed",
    section="notify",
    unit="s",
    minimum=1,
    shared=True,
)
register(
    "COREBOARD_WEBHOOK_RESPONSE_BYTES",
    "int",
    4096,
    "bytes of a webhook's answer read and kept in the delivery log; the rest is not read",
    section="notify",
    unit="bytes",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_NOTIFY_MAX_RETRIES",
    "int",
    8,
    "retries of a failed notification (network error, timeout, 5xx, 408, 429) before it is "
    "given up; a 4xx answer is not retried",
    section="notify",
    minimum=0,
    shared=True,
)
register(
    "COREBOARD_NOTIFY_RETRY_BASE_S",
    "int",
    15,
    "first retry delay; each next one doubles, up to the cap, with full jitter (Celery's "
    "exponential backoff)",
    section="notify",
    unit="s",
    minimum=1,
    shared=True,
)
register(
    "COREBOARD_NOTIFY_RETRY_MAX_S",
    "int",
    1800,
    "the cap on one retry delay (at most 3000: a retry waits in the worker, unacknowledged, "
    "and must come before Redis's one-hour visibility timeout redelivers it)",
    section="notify",
    unit="s",
    minimum=1,
    shared=True,
    check=lambda value: "" if value <= 3000 else "must be at most 3000",
)
register(
    "COREBOARD_WEBHOOKS_PER_PERSON",
    "int",
    10,
    "webhooks one person may have",
    section="notify",
    minimum=0,
)
register(
    "COREBOARD_OVERVIEW_ACTIVE_MAX",
    "int",
    100,
    "active jobs the overview lists; the rest are counted",
    section="web",
    minimum=1,
)
register(
    "COREBOARD_TOKEN_EXPIRY_DAYS",
    "int",
    90,
    "days until a new API token expires unless its maker picks; `0`: never",
    section="web",
    unit="days",
    minimum=0,
)
register(
    "COREBOARD_METRICS_ALLOWED_IPS",
    "list",
    [],
    "addresses or networks (CIDR) that may scrape `/metrics` without a staff member's token",
    section="web",
    check=_networks,
)

# Security
register(
    "SECRET_KEY",
    "str",
    "",
    "Django's secret key",
    section="security",
    secret=True,
    default_doc="generated once into `var/secrets/django-secret-key`",
)
register(
    "COREBOARD_LOGIN_FAILURE_LIMIT",
    "int",
    5,
    "failed logins in a row after which a username is refused (429) to the address that "
    "failed it, on both login forms (django-axes)",
    section="security",
    minimum=1,
)
register(
    "COREBOARD_LOGIN_LOCKOUT_S",
    "int",
    300,
    "how long a username stays refused to an address, or an address to everyone, after too "
    "many failed logins",
    section="security",
    unit="s",
    minimum=1,
    aliases=("COREBOARD_LOGIN_LOCKOUT_SECONDS",),
)
register(
    "COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT",
    "int",
    50,
    "failed logins from one address, whatever the usernames, after which that address may "
    "not log in (429) for COREBOARD_LOGIN_LOCKOUT_S: against password spraying (a "
    "username is locked only for the address that failed it, COREBOARD_LOGIN_FAILURE_LIMIT)",
    section="security",
    minimum=1,
)
register(
    "COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS",
    "bool",
    True,
    "deletes a person's API tokens when their password changes (by them, an admin or "
    "`changepassword`), as their sessions end; `0` keeps them",
    section="security",
)
register(
    "COREBOARD_HTTP_HEADER_TIMEOUT_S",
    "int",
    20,
    "time a client has for a request's headers, from connecting (or from the end of its "
    "previous request on a kept-alive connection); then 408 and the connection closes",
    section="security",
    unit="s",
    minimum=1,
)
register(
    "COREBOARD_HTTP_BODY_TIMEOUT_S",
    "int",
    20,
    "time a request body may take beyond what COREBOARD_HTTP_BODY_MIN_BYTES_PER_S allows for "
    "the bytes already received; then 408 and the connection closes",
    section="security",
    unit="s",
    minimum=1,
)
register(
    "COREBOARD_HTTP_BODY_MIN_BYTES_PER_S",
    "int",
    1024,
    "slowest request body a client may send: each byte received extends its deadline "
    "(COREBOARD_HTTP_BODY_TIMEOUT_S) by 1/rate seconds",
    section="security",
    unit="bytes/s",
    minimum=1,
)
register(
    "COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS",
    "int",
    256,
    "open connections (websockets included) daphne accepts from one client address; one "
    "more is answered 429 and closed. `0`: no cap (behind a reverse proxy every client has "
    "the proxy's address: cap there)",
    section="security",
    minimum=0,
)
register(
    "SECURE_PROXY_SSL_HEADER",
    "list",
    [],
    "behind a TLS proxy: the header and value that mark a request as HTTPS, "
    "e.g. `X-Forwarded-Proto,https`",
    section="security",
    check=_header_and_value,
    default_doc="unset",
)
register("SECURE_SSL_REDIRECT", "bool", False, "redirect plain HTTP to HTTPS", section="security")
register(
    "SESSION_COOKIE_SECURE",
    "bool",
    False,
    "send the session cookie over HTTPS only",
    section="security",
)
register(
    "CSRF_COOKIE_SECURE", "bool", False, "send the CSRF cookie over HTTPS only", section="security"
)
register(
    "SECURE_HSTS_SECONDS",
    "int",
    0,
    "HTTP Strict Transport Security: how long browsers use HTTPS only",
    section="security",
    unit="s",
    minimum=0,
)
register(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "bool",
    False,
    "HSTS for subdomains too",
    section="security",
)
register(
    "SECURE_HSTS_PRELOAD", "bool", False, "allow browsers' HSTS preload lists", section="security"
)

# Django
register("DEBUG", "bool", False, "Django's debug mode (never in production)", section="django")
register(
    "ALLOWED_HOSTS",
    "list",
    ["127.0.0.1", "localhost", "[::1]"],
    "host names the site answers to",
    section="django",
)
register(
    "CSRF_TRUSTED_ORIGINS",
    "list",
    [],
    "origins (scheme and host) trusted for unsafe requests, e.g. behind a proxy",
    section="django",
)
register(
    "MEDIA_ROOT",
    "str",
    "",
    "where uploads and result files are stored (shared storage when workers run on several "
    "machines)",
    section="django",
    shared=True,
    default_doc="`var/media`",
)
register(
    "TIME_ZONE",
    "str",
    "UTC",
    "the time zone dates are shown and days counted in",
    section="django",
    shared=True,
)
register("LOG_LEVEL", "str", "INFO", "level of the root logger", section="django")


# --- Reading -----------------------------------------------------------------------------


def setting(name: str) -> Setting:
    """The entry of `name` (or of the setting `name` is an old alias of)."""
    try:
        return SETTINGS[_ALIASES.get(name, name)]
    except KeyError:
        raise KeyError(f"{name} is not declared in coreconf/config.py") from None


def _typed(name: str, kind: Kind, environ: Mapping[str, str] | None) -> Any:
    entry = setting(name)
    if entry.kind != kind:
        raise TypeError(f"{name} is declared as {entry.kind}, read as {kind}")
    return entry.read(os.environ if environ is None else environ)


def string(name: str, environ: Mapping[str, str] | None = None) -> str:
    value: str = _typed(name, "str", environ)
    return value


def boolean(name: str, environ: Mapping[str, str] | None = None) -> bool:
    value: bool = _typed(name, "bool", environ)
    return value


def integer(name: str, environ: Mapping[str, str] | None = None) -> int:
    value: int = _typed(name, "int", environ)
    return value


def number(name: str, environ: Mapping[str, str] | None = None) -> float:
    value: float = _typed(name, "float", environ)
    return value


def strings(name: str, environ: Mapping[str, str] | None = None) -> list[str]:
    value: list[str] = list(_typed(name, "list", environ))
    return value


def mapping(name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    value: dict[str, str] = dict(_typed(name, "mapping", environ))
    return value


def is_set(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether `environ` gives `name` a value (under its name or an alias)."""
    return bool(setting(name).given_in(os.environ if environ is None else environ))


def shared_settings() -> list[Setting]:
    """The settings every worker machine must share with the main machine."""
    return [entry for entry in SETTINGS.values() if entry.shared]


# --- The reference -----------------------------------------------------------------------

REFERENCE_PATH = "docs/configuration.md"
_KIND_WORDS: dict[Kind, str] = {
    "str": "text",
    "bool": "boolean",
    "int": "integer",
    "float": "number",
    "list": "list",
    "mapping": "`key=value` list",
}


def _default_text(entry: Setting) -> str:
    if entry.default_doc:
        return entry.default_doc
    value = entry.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | dict) and not value:
        return "none"
    if isinstance(value, list):
        return f"`{','.join(value)}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == "":
        return "none"
    return f"`{value}`"


def _type_text(entry: Setting) -> str:
    words = [_KIND_WORDS[entry.kind]]
    if entry.kind == "list":
        words = ["comma-separated list"]
    if entry.unit:
        words.append(entry.unit)
    if entry.minimum is not None:
        words.append(f"≥ {entry.minimum}")
    return ", ".join(words)


def _meaning_text(entry: Setting) -> str:
    notes = [entry.doc[0].upper() + entry.doc[1:] + "."]
    if entry.secret:
        notes.append("A secret: keep it out of logs and shared files.")
    for alias in entry.aliases:
        notes.append(f"Formerly `{alias}`, still read (deprecated).")
    return " ".join(notes)


def reference_markdown() -> str:
    """docs/configuration.md: the table above, as Markdown for people."""
    lines = [
        "<!-- Generated from coreconf/config.py by `python manage.py reference`: edit the "
        "table there, then regenerate; a test fails while this file and the table differ. -->",
        "",
        "# Configuration",
        "",
        "Everything is an environment variable; the defaults suit one machine. Durations are "
        "named after their unit (`_MS`: milliseconds, `_S`: seconds), sizes in `_BYTES`; an "
        "empty value counts as unset; a value that does not parse or is below its minimum "
        "stops the process with a message naming the variable.",
        "",
        "**Shared**: every worker machine must run with the main machine's value. The join "
        "command (`COREBOARD_LISTEN=<address> make run` writes it to `var/join-command`) "
        "carries them: `DATABASE_URL`, `REDIS_URL` and `MEDIA_ROOT` always (as other machines "
        "reach them), the others where the main machine sets them.",
    ]
    for section, title in SECTIONS.items():
        entries = [entry for entry in SETTINGS.values() if entry.section == section]
        lines += [
            "",
            f"## {title}",
            "",
            "| variable | type | default | shared | meaning |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{entry.name}` | {_type_text(entry)} | {_default_text(entry)} "
            f"| {'yes' if entry.shared else ''} | {_meaning_text(entry)} |"
            for entry in entries
        ]
    renamed = [(alias, entry.name) for entry in SETTINGS.values() for alias in entry.aliases]
    if renamed:
        lines += [
            "",
            "## Renamed variables",
            "",
            "The old names still work; when both are set, the new one wins.",
            "",
            "| old name (deprecated) | new name |",
            "|---|---|",
        ]
        lines += [f"| `{old}` | `{new}` |" for old, new in sorted(renamed)]
    return "\n".join(lines) + "\n"
