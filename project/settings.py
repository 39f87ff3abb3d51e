"""The one settings module. Every knob is an environment variable (see README: Configuration)."""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from typing import Any

import dj_database_url
import django_stubs_ext
from csp.constants import NONE, SELF

from launcher import stack

# Django's generic classes (ModelAdmin[Job], QuerySet[Job], ...) subscriptable at runtime,
# as django-stubs types them, so a class can name its model in its base.
django_stubs_ext.monkeypatch()

BASE_DIR = stack.BASE_DIR


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise RuntimeError(f"environment variable {name} is required")
    return value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise RuntimeError(f"environment variable {name} must be a boolean, got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise RuntimeError(
            f"environment variable {name} must be an integer, got {value!r}"
        ) from None
    if minimum is not None and number < minimum:
        raise RuntimeError(f"environment variable {name} must be >= {minimum}, got {number}")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
# 64 characters: Django's deploy check asks for at least 50.
SECRET_KEY = os.environ.get("SECRET_KEY") or stack.read_or_create_secret(
    "django-secret-key", nbytes=48, min_length=50
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Behind TLS (README: Security): the proxy terminates TLS and says so in a header, e.g.
# SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto,https. With these set, `check --deploy` is clean.
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER", [])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise RuntimeError("SECURE_PROXY_SSL_HEADER must be 'Header-Name,value'")
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _proxy_ssl_header[0].upper().replace("-", "_"),
        _proxy_ssl_header[1],
    )
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    "jobs",
    "tokens",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "jobs.middleware.NoStoreWhenLoggedIn",
    "jobs.middleware.LockTimeoutIsBusy",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

# Scripts and styles come from our own static files only: no inline <script>, no style=""
# (data blocks from json_script are not executed, so they need no exception). Websockets to
# the same host match 'self'.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores: DATABASE_URL / REDIS_URL, or the embedded default under ./var -------------

EMBEDDED_POSTGRES = "DATABASE_URL" not in os.environ
EMBEDDED_REDIS = "REDIS_URL" not in os.environ
# The embedded defaults read var/secrets, which only root may when `make run` ran as root:
# its services get the URLs in their environment instead.
DATABASE_URL = os.environ.get("DATABASE_URL") or stack.EmbeddedPostgres.default().url()
REDIS_URL = (os.environ.get("REDIS_URL") or stack.EmbeddedRedis.default().url()).rstrip("/")

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
# No machine may freeze the others by vanishing while it holds a lock (a job's row lock is
# shared by every worker of that job). Every session, web and worker alike:
# - waits at most COREBOARD_DB_LOCK_TIMEOUT_MS for a lock, then the caller retries or says
#   "busy" (jobs.engine.job_state.retry_on_lock_timeout, jobs.middleware);
# - is ended by the server once idle inside a transaction for
#   COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS, which releases a vanished machine's locks;
# - has TCP keepalives on both ends, so a dead peer is noticed in about
#   COREBOARD_DB_KEEPALIVE_S * 2.5 seconds rather than the kernel's two hours.
COREBOARD_DB_LOCK_TIMEOUT_MS = env_int("COREBOARD_DB_LOCK_TIMEOUT_MS", 5000, minimum=0)
COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = env_int(
    "COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 20_000, minimum=0
)
COREBOARD_DB_KEEPALIVE_S = env_int("COREBOARD_DB_KEEPALIVE_S", 10, minimum=1)
_keepalive_interval = max(COREBOARD_DB_KEEPALIVE_S // 2, 1)
_session_options = {
    "lock_timeout": COREBOARD_DB_LOCK_TIMEOUT_MS,
    "idle_in_transaction_session_timeout": COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    "tcp_keepalives_idle": COREBOARD_DB_KEEPALIVE_S,
    "tcp_keepalives_interval": _keepalive_interval,
    "tcp_keepalives_count": 3,
}
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options["options"] = " ".join(
    [_db_options.get("options", ""), *(f"-c {k}={v}" for k, v in _session_options.items())]
).strip()
_db_options.setdefault("keepalives", 1)
_db_options.setdefault("keepalives_idle", COREBOARD_DB_KEEPALIVE_S)
_db_options.setdefault("keepalives_interval", _keepalive_interval)
_db_options.setdefault("keepalives_count", 3)
# Unacknowledged writes (a request sent into a partition) give up after the same time.
_db_options.setdefault("tcp_user_timeout", COREBOARD_DB_KEEPALIVE_S * 2500)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _redis_db_url(db: int) -> str:
    """REDIS_URL with its database number replaced, so broker and channel layer stay apart."""
    head, _, tail = REDIS_URL.rpartition("/")
    return f"{head}/{db}" if tail.isdigit() and head.count("/") >= 2 else f"{REDIS_URL}/{db}"


# Throttle counters and login failures, shared by every daphne process (db 2).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": _redis_db_url(2),
    }
}
CHANNEL_LAYER_REDIS_URL = _redis_db_url(1)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, equal to channels-redis' blocking
            # read: idle consumers would die after ~5 s. None disables it.
            "hosts": [{"address": CHANNEL_LAYER_REDIS_URL, "socket_timeout": None}],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

# --- Celery (namespace CELERY_) ------------------------------------------------------------

CHUNK_SOFT_TIME_LIMIT = env_int("COREBOARD_CHUNK_TIME_LIMIT", 600, minimum=1)
# A slot gives up its process at least this often (and every COREBOARD_SLOT_SLICE_MS when
# other messages wait), so Celery's task time limits bound one chunk plus this.
COREBOARD_SLOT_MAX_SECONDS = env_int("COREBOARD_SLOT_MAX_SECONDS", 60, minimum=1)
CELERY_BROKER_URL = _redis_db_url(0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The visibility timeout must exceed the longest chunk, or Redis redelivers running chunks.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": max(3600, CHUNK_SOFT_TIME_LIMIT * 3)}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Delivery policy (acks_late, reject_on_worker_lost, ignore_result) is on the one task,
# jobs.tasks.slot_run, where it is read with the code it protects.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = CHUNK_SOFT_TIME_LIMIT + COREBOARD_SLOT_MAX_SECONDS
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# A broker blip must not kill running slots: their results go to PostgreSQL, accounted
# exactly once, and their leases keep their chunks.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "coreboard"
# Task events for monitors such as Flower (off by default: one more broker message per
# task state change). COREBOARD_TASK_EVENTS=1 turns on both the worker's and the sender's.
COREBOARD_TASK_EVENTS = env_bool("COREBOARD_TASK_EVENTS", False)
CELERY_WORKER_SEND_TASK_EVENTS = COREBOARD_TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = COREBOARD_TASK_EVENTS
# Celery's Django fixup closes the database connection around every task unless this is
# set; reconnecting (SCRAM auth, a new backend) cost ~6 ms per chunk here. Connections are
# checked around each task instead (project.celery), honouring CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 10_000

# --- Coreboard ------------------------------------------------------------------------------

# Modules that register job kinds; a deployment appends its own (comma-separated env var).
BUILTIN_JOB_KINDS = [
    "jobs.kinds.primes",
    "jobs.kinds.montecarlo_pi",
    "jobs.kinds.mandelbrot",
    "jobs.kinds.wordcount",
    "jobs.kinds.hash_search",
    "jobs.kinds.burn",
]
COREBOARD_JOB_KINDS = [*BUILTIN_JOB_KINDS, *env_list("COREBOARD_JOB_KINDS", [])]
# Free-form tags a worker shows on the overview (e.g. "gpu,rack-2"); comma-separated.
COREBOARD_WORKER_LABELS = env_list("COREBOARD_WORKER_LABELS", [])
# The kinds a worker advertises and runs: every kind registered in it, or only these.
COREBOARD_WORKER_KINDS = env_list("COREBOARD_WORKER_KINDS", [])
# Slots of a job go to its kind's queue: `coreboard.kind.<kind>`, or the queue named here
# (`mandelbrot=gpu,primes=gpu`); a worker consumes the queues of the kinds it has.
COREBOARD_KIND_QUEUES: dict[str, str] = {}
for _route in env_list("COREBOARD_KIND_QUEUES", []):
    _kind, _, _queue = _route.partition("=")
    if not _kind.strip() or not _queue.strip():
        raise RuntimeError(
            f"environment variable COREBOARD_KIND_QUEUES: {_route!r} is not kind=queue"
        )
    COREBOARD_KIND_QUEUES[_kind.strip()] = _queue.strip()
# Largest file a person may upload for a job (bytes); enforced while the body streams in.
COREBOARD_UPLOAD_MAX_BYTES = env_int("COREBOARD_UPLOAD_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
# Worker processes a job uses when it does not say: 0 means every live worker process that
# has its kind, counted afresh while it runs (machines that join mid-job help).
COREBOARD_DEFAULT_PARALLELISM = env_int("COREBOARD_DEFAULT_PARALLELISM", 0, minimum=0)
COREBOARD_MAX_PARALLELISM = env_int("COREBOARD_MAX_PARALLELISM", 1024, minimum=1)
# Per-person quotas (README: Security). Chunk-seconds count only kinds that can estimate
# their run time (burn); 86,400 is one CPU-day.
COREBOARD_QUOTA_ACTIVE_JOBS = env_int("COREBOARD_QUOTA_ACTIVE_JOBS", 10, minimum=1)
COREBOARD_QUOTA_CHUNKS = env_int("COREBOARD_QUOTA_CHUNKS", 200_000, minimum=1)
COREBOARD_QUOTA_CHUNK_SECONDS = env_int("COREBOARD_QUOTA_CHUNK_SECONDS", 86_400, minimum=1)
COREBOARD_QUOTA_UPLOADS = env_int("COREBOARD_QUOTA_UPLOADS", 100, minimum=1)
COREBOARD_QUOTA_UPLOAD_BYTES = env_int(
    "COREBOARD_QUOTA_UPLOAD_BYTES", 1024 * 1024 * 1024, minimum=1
)
# Websockets: open sockets per person (per daphne process), how often a socket checks that
# its session still holds, how many active jobs the overview lists (the rest are counted).
COREBOARD_MAX_SOCKETS_PER_USER = env_int("COREBOARD_MAX_SOCKETS_PER_USER", 20, minimum=1)
COREBOARD_SOCKET_SESSION_CHECK_SECONDS = (
    env_int("COREBOARD_SOCKET_SESSION_CHECK_MS", 2000, minimum=100) / 1000
)
COREBOARD_OVERVIEW_ACTIVE_MAX = env_int("COREBOARD_OVERVIEW_ACTIVE_MAX", 100, minimum=1)
# Retries after a chunk raised (with backoff: 1 s, 2 s, 4 s, ... up to 30 s); then the job fails.
COREBOARD_CHUNK_MAX_RETRIES = env_int("COREBOARD_CHUNK_MAX_RETRIES", 2, minimum=0)
# Runs of one chunk whose worker process was lost before it is failed, so a chunk that
# kills its process cannot loop forever.
COREBOARD_CHUNK_MAX_ATTEMPTS = env_int("COREBOARD_CHUNK_MAX_ATTEMPTS", 5, minimum=1)
# How often a running chunk looks for a cancellation and reports its own progress, and how
# often each process flushes its coalesced events (state changes go out on the next flush).
COREBOARD_CANCEL_POLL_SECONDS = env_int("COREBOARD_CANCEL_POLL_MS", 1000, minimum=10) / 1000
COREBOARD_PROGRESS_INTERVAL_SECONDS = (
    env_int("COREBOARD_PROGRESS_INTERVAL_MS", 500, minimum=10) / 1000
)
COREBOARD_PUBLISH_INTERVAL_SECONDS = (
    env_int("COREBOARD_PUBLISH_INTERVAL_MS", 100, minimum=10) / 1000
)

# The execution engine (jobs.services: slots, leases, the reconciler; README: Architecture).
# A claimed chunk's lease: renewed every second by its process; once expired (process or
# machine gone) the chunk is claimed again.
COREBOARD_LEASE_SECONDS = env_int("COREBOARD_LEASE_MS", 10_000, minimum=1000) / 1000
# How often each worker's reconciler runs (one worker at a time does the global part).
COREBOARD_RECONCILE_SECONDS = env_int("COREBOARD_RECONCILE_MS", 1000, minimum=100) / 1000
# A slot yields its process to waiting messages after this much work (fair share).
COREBOARD_SLOT_SLICE_SECONDS = env_int("COREBOARD_SLOT_SLICE_MS", 500, minimum=10) / 1000
# Outcomes of a slot's chunks are written together at most this often while a batch runs.
COREBOARD_FLUSH_SECONDS = env_int("COREBOARD_FLUSH_MS", 250, minimum=1) / 1000
# A slot claims as many chunks at once as fit in about this much work.
COREBOARD_BATCH_TARGET_SECONDS = env_int("COREBOARD_BATCH_TARGET_MS", 100, minimum=1) / 1000
# Most slots (busy worker processes) one person's jobs may hold at once; 0: no limit.
COREBOARD_OWNER_MAX_SLOTS = env_int("COREBOARD_OWNER_MAX_SLOTS", 0, minimum=0)

# --- Auth, API, i18n, static ----------------------------------------------------------------

# Failed logins (both login forms: /accounts/login/ and the admin's) are counted per
# username by django-axes in the cache; after COREBOARD_LOGIN_FAILURE_LIMIT in a row that
# username is refused (429) for COREBOARD_LOGIN_LOCKOUT_SECONDS, from every client, the
# right password included. Per username, not per address: behind a proxy every client
# shares one address, and a password guesser changes addresses cheaply.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_FAILURE_LIMIT = env_int("COREBOARD_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("COREBOARD_LOGIN_LOCKOUT_SECONDS", 300, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# axes.W006 warns when lockouts ignore the client address, since rotating user agents or
# cookies then escapes them; a lockout per username cannot be escaped that way.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "jobs:overview"
LOGOUT_REDIRECT_URL = "login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tokens.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "jobs.api.errors.refusal_exception_handler",
    # Per person (per address when logged out); 429 with Retry-After beyond (README: Security).
    "DEFAULT_THROTTLE_RATES": {
        "job-create": env_str("COREBOARD_RATE_JOB_CREATE", "10/minute"),
        "job-preview": env_str("COREBOARD_RATE_JOB_PREVIEW", "120/minute"),
        "job-action": env_str("COREBOARD_RATE_JOB_ACTION", "30/minute"),
        "upload": env_str("COREBOARD_RATE_UPLOAD", "20/minute"),
    },
    "DEFAULT_PARSER_CLASSES": [
        "jobs.api.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

# API tokens (tokens app): days until a new token expires unless its maker says (0: never).
COREBOARD_TOKEN_EXPIRY_DAYS = env_int("COREBOARD_TOKEN_EXPIRY_DAYS", 90, minimum=0)

SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Coreboard API",
    "DESCRIPTION": (
        "Submit CPU-heavy jobs, watch them and read their results. Authenticate with "
        "`Authorization: Token <key>` (make a key on the API tokens page) or a session."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files come from the drf-spectacular-sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "ChunkStatusEnum": "jobs.models.Chunk.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.openapi.add_components",
    ],
}

# /metrics: besides a staff member's API token, addresses (or networks, CIDR) that may
# scrape without one, e.g. the Prometheus server's.
COREBOARD_METRICS_ALLOWED_IPS = env_list("COREBOARD_METRICS_ALLOWED_IPS", [])
for _network in COREBOARD_METRICS_ALLOWED_IPS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise RuntimeError(
            f"COREBOARD_METRICS_ALLOWED_IPS: {_network!r} is not an address or network"
        ) from None

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Front-end packages come from npm (package-lock.json) at setup time, never from the repo.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist"),
]
# Uploads and result files. With workers on several machines this must be shared storage
# (a network file system, or another Django storage backend).
MEDIA_ROOT = env_str("MEDIA_ROOT", str(stack.VAR_DIR / "media"))
# Uploads and results are for the service account only (and its group), not other users.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
# WhiteNoise serves straight from the finders, so no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
