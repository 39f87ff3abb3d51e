"""The one settings module. Every knob is an environment variable declared in
coreconf/config.py (its type, default, unit and doc; docs/configuration.md is generated from
it); what Django and Celery need is derived from those values here."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import dj_database_url
import django_stubs_ext
from csp.constants import NONE, SELF

from coreconf import config, paths

# Django's generic classes (ModelAdmin[Job], QuerySet[Job], ...) subscriptable at runtime,
# as django-stubs types them, so a class can name its model in its base.
django_stubs_ext.monkeypatch()

BASE_DIR = paths.BASE_DIR

DEBUG = config.boolean("DEBUG")
# Read, never created here: the programs that start Django create it (coreconf.paths).
SECRET_KEY = config.string("SECRET_KEY") or paths.read_secret(paths.DJANGO_SECRET_KEY_SECRET)
ALLOWED_HOSTS = config.strings("ALLOWED_HOSTS")
CSRF_TRUSTED_ORIGINS = config.strings("CSRF_TRUSTED_ORIGINS")

# Behind TLS (docs/security.md): the proxy terminates TLS and says so in a header, e.g.
# SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto,https. With these set, `check --deploy` is clean.
_proxy_ssl_header = config.strings("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + _proxy_ssl_header[0].upper().replace("-", "_"),
        _proxy_ssl_header[1],
    )
SECURE_SSL_REDIRECT = config.boolean("SECURE_SSL_REDIRECT")
SESSION_COOKIE_SECURE = config.boolean("SESSION_COOKIE_SECURE")
CSRF_COOKIE_SECURE = config.boolean("CSRF_COOKIE_SECURE")
SECURE_HSTS_SECONDS = config.integer("SECURE_HSTS_SECONDS")
SECURE_HSTS_INCLUDE_SUBDOMAINS = config.boolean("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_HSTS_PRELOAD = config.boolean("SECURE_HSTS_PRELOAD")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    # PostgreSQL's own features: the history search's pg_trgm indexes (OpClass needs the app).
    "django.contrib.postgres",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "axes",
    # People's schedules: stored in PostgreSQL, read by celery beat (jobs.beat).
    "django_celery_beat",
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
    "jobs.middleware.BrokerErrorIsUnavailable",
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

EMBEDDED_POSTGRES = not config.is_set("DATABASE_URL")
EMBEDDED_REDIS = not config.is_set("REDIS_URL")
# The embedded defaults read var/secrets, which only root may when `make run` ran as root:
# its services get the URLs in their environment instead.
DATABASE_URL = config.string("DATABASE_URL") or paths.embedded_postgres_url()
REDIS_URL = (config.string("REDIS_URL") or paths.embedded_redis_url()).rstrip("/")
# Every Coreboard Redis call gives up after this (jobs.engine.redis_clients says why).
COREBOARD_REDIS_TIMEOUT_MS = config.integer("COREBOARD_REDIS_TIMEOUT_MS")

DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=config.integer("DB_CONN_MAX_AGE"), conn_health_checks=True
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
COREBOARD_DB_LOCK_TIMEOUT_MS = config.integer("COREBOARD_DB_LOCK_TIMEOUT_MS")
COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS = config.integer(
    "COREBOARD_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"
)
COREBOARD_DB_KEEPALIVE_S = config.integer("COREBOARD_DB_KEEPALIVE_S")
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
        # Short timeouts and the process's Redis breaker, as every Coreboard client: a hung
        # Redis must not hold a throttled request (throttles fail open) or a login.
        "OPTIONS": {"pool_class": "jobs.engine.redis_clients.GuardedConnectionPool"},
    }
}
CHANNEL_LAYER_REDIS_URL = _redis_db_url(1)
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 defaults to a 5 s socket timeout, equal to channels-redis' blocking
            # read (BZPOPMIN, 5 s): idle reads would time out. 10 s still ends a read from
            # a Redis that hangs or vanished without closing the connection; consumers
            # survive it (jobs.sockets.guards), and pages hear of a hang sooner from
            # jobs.sockets.broker's pings.
            "hosts": [
                {
                    "address": CHANNEL_LAYER_REDIS_URL,
                    "socket_timeout": 10,
                    "socket_connect_timeout": 2,
                    # redis-py's pool refuses a 101st connection at once (MaxConnectionsError,
                    # which the sockets took for a broker failure: every page resynced at
                    # once). A busy daphne has a Redis call in flight per socket at times.
                    "max_connections": 1000,
                }
            ],
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

# --- Celery (namespace CELERY_) ------------------------------------------------------------

COREBOARD_CHUNK_TIME_LIMIT_S = config.integer("COREBOARD_CHUNK_TIME_LIMIT_S")
# A slot gives up its process at least this often (and every COREBOARD_SLOT_SLICE_MS when
# other messages wait), so Celery's task time limits bound one chunk plus this.
COREBOARD_SLOT_MAX_S = config.integer("COREBOARD_SLOT_MAX_S")
COREBOARD_KILL_GRACE_MS = config.integer("COREBOARD_KILL_GRACE_MS")
COREBOARD_CHUNK_CAPTURE = config.boolean("COREBOARD_CHUNK_CAPTURE")
COREBOARD_CHUNK_OUTPUT_BYTES = config.integer("COREBOARD_CHUNK_OUTPUT_BYTES")
COREBOARD_CHUNK_NICE = config.integer("COREBOARD_CHUNK_NICE")
CELERY_BROKER_URL = _redis_db_url(0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The visibility timeout must exceed the longest chunk, or Redis redelivers running chunks.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(3600, COREBOARD_CHUNK_TIME_LIMIT_S * 3),
    # kombu waits for ever by default: a publish to a hung Redis (a slot message) would
    # hold its caller, and a connect into a partition the kernel's two minutes. Longer than
    # Coreboard's own Redis timeout: the consumer's BRPOP answers within brpop_timeout (1 s),
    # and a timeout here restarts the worker's consumer (running slots go on). Coreboard's
    # guarded calls come first (the slot registry), so a hung Redis is usually found there.
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
    # Message priorities (kombu: 0 first): one Redis list per step and queue, BRPOP naming
    # the steps first to last. Exactly jobs.engine.dispatch.BROKER_PRIORITIES' values (a
    # test checks). Queues themselves stay round robin: "priority" ordering of queues
    # would let one kind's queue starve the others'.
    "priority_steps": [0, 3, 6, 9],
    "queue_order_strategy": "round_robin",
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Delivery policy (acks_late, reject_on_worker_lost, ignore_result) is on the one task,
# jobs.tasks.slot_run, where it is read with the code it protects.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A backstop only: the worker's main process stops a chunk at its own limit (at most
# COREBOARD_CHUNK_TIME_LIMIT_S, jobs.engine.stopper), so the task's limit leaves room for a
# slot's last chunk started just before COREBOARD_SLOT_MAX_S, the kill grace and a margin.
CELERY_TASK_SOFT_TIME_LIMIT = (
    COREBOARD_CHUNK_TIME_LIMIT_S + COREBOARD_SLOT_MAX_S + COREBOARD_KILL_GRACE_MS // 1000 + 30
)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 30
# A broker blip must not kill running slots: their results go to PostgreSQL, accounted
# exactly once, and their leases keep their chunks.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "coreboard"
# Celery's formats plus the job and chunk running in the process (` job=12 chunk=3`), set
# by a filter on the worker's handlers (jobs.engine.tasks.log_chunk_context).
CELERY_WORKER_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s]%(chunk_context)s %(message)s"
)
CELERY_WORKER_TASK_LOG_FORMAT = (
    "[%(asctime)s: %(levelname)s/%(processName)s] %(task_name)s[%(task_id)s]"
    "%(chunk_context)s: %(message)s"
)
# Task events for monitors such as Flower (off by default: one more broker message per
# task state change). COREBOARD_TASK_EVENTS=1 turns on both the worker's and the sender's.
COREBOARD_TASK_EVENTS = config.boolean("COREBOARD_TASK_EVENTS")
CELERY_WORKER_SEND_TASK_EVENTS = COREBOARD_TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = COREBOARD_TASK_EVENTS
# Celery's Django fixup closes the database connection around every task unless this is
# set; reconnecting (SCRAM auth, a new backend) cost ~6 ms per chunk here. Connections are
# checked around each task instead (project.celery), honouring CONN_MAX_AGE.
CELERY_DB_REUSE_MAX = 10_000
# People's schedules (jobs.beat): celery beat reads django-celery-beat's tables, and only
# the process holding the cluster's scheduler lock fires them.
CELERY_BEAT_SCHEDULER = "jobs.beat:CoreboardScheduler"
# How often a beat that does not hold the lock tries again, and the longest a holder sleeps
# (so it notices a new or changed schedule within that).
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
# No result backend, so no nightly `celery.backend_cleanup` entry for beat to install.
CELERY_RESULT_EXPIRES = None
COREBOARD_SCHEDULE_MIN_INTERVAL_S = config.integer("COREBOARD_SCHEDULE_MIN_INTERVAL_S")
COREBOARD_QUOTA_SCHEDULES = config.integer("COREBOARD_QUOTA_SCHEDULES")

# --- Coreboard ------------------------------------------------------------------------------
# One line per knob that code reads as `settings.X`, so that django-stubs types it; what
# each means, its default and its limits are in coreconf/config.py.

# Modules that register job kinds; a deployment appends its own (COREBOARD_JOB_KINDS).
BUILTIN_JOB_KINDS = [
    "jobs.kinds.primes",
    "jobs.kinds.montecarlo_pi",
    "jobs.kinds.mandelbrot",
    "jobs.kinds.wordcount",
    "jobs.kinds.hash_search",
    "jobs.kinds.burn",
]
COREBOARD_JOB_KINDS = [*BUILTIN_JOB_KINDS, *config.strings("COREBOARD_JOB_KINDS")]
COREBOARD_KINDS_DIR = Path(config.string("COREBOARD_KINDS_DIR") or BASE_DIR / "kinds")
COREBOARD_WORKER_LABELS = config.strings("COREBOARD_WORKER_LABELS")
COREBOARD_WORKER_KINDS = config.strings("COREBOARD_WORKER_KINDS")
COREBOARD_CODE_VERSION = config.string("COREBOARD_CODE_VERSION")
COREBOARD_KIND_QUEUES = config.mapping("COREBOARD_KIND_QUEUES")
COREBOARD_UPLOAD_MAX_BYTES = config.integer("COREBOARD_UPLOAD_MAX_BYTES")
COREBOARD_DEFAULT_PARALLELISM = config.integer("COREBOARD_DEFAULT_PARALLELISM")
COREBOARD_MAX_PARALLELISM = config.integer("COREBOARD_MAX_PARALLELISM")
COREBOARD_QUOTA_ACTIVE_JOBS = config.integer("COREBOARD_QUOTA_ACTIVE_JOBS")
COREBOARD_SWEEP_MAX_RUNS = config.integer("COREBOARD_SWEEP_MAX_RUNS")
COREBOARD_QUOTA_CHUNKS = config.integer("COREBOARD_QUOTA_CHUNKS")
COREBOARD_QUOTA_CHUNK_S = config.integer("COREBOARD_QUOTA_CHUNK_S")
COREBOARD_QUOTA_JOB_S = config.integer("COREBOARD_QUOTA_JOB_S")
COREBOARD_QUOTA_UPLOADS = config.integer("COREBOARD_QUOTA_UPLOADS")
COREBOARD_SPLIT_CPU_MS = config.integer("COREBOARD_SPLIT_CPU_MS")
COREBOARD_QUOTA_UPLOAD_BYTES = config.integer("COREBOARD_QUOTA_UPLOAD_BYTES")
COREBOARD_MAX_SOCKETS_PER_USER = config.integer("COREBOARD_MAX_SOCKETS_PER_USER")
COREBOARD_SOCKET_SESSION_CHECK_MS = config.integer("COREBOARD_SOCKET_SESSION_CHECK_MS")
COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS = config.boolean(
    "COREBOARD_PASSWORD_CHANGE_REVOKES_TOKENS"
)
# Read by daphne's seam (launcher.server): header and body deadlines, connections per address.
COREBOARD_HTTP_HEADER_TIMEOUT_S = config.integer("COREBOARD_HTTP_HEADER_TIMEOUT_S")
COREBOARD_HTTP_BODY_TIMEOUT_S = config.integer("COREBOARD_HTTP_BODY_TIMEOUT_S")
COREBOARD_HTTP_BODY_MIN_BYTES_PER_S = config.integer("COREBOARD_HTTP_BODY_MIN_BYTES_PER_S")
COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS = config.integer(
    "COREBOARD_HTTP_MAX_CONNECTIONS_PER_ADDRESS"
)
COREBOARD_SOCKET_BACKLOG_BYTES = config.integer("COREBOARD_SOCKET_BACKLOG_BYTES")
COREBOARD_OVERVIEW_ACTIVE_MAX = config.integer("COREBOARD_OVERVIEW_ACTIVE_MAX")
COREBOARD_EXPORTS_PER_PERSON = config.integer("COREBOARD_EXPORTS_PER_PERSON")
COREBOARD_COMPARE_RUNS_MAX = config.integer("COREBOARD_COMPARE_RUNS_MAX")
COREBOARD_EXPORTS_AT_ONCE = config.integer("COREBOARD_EXPORTS_AT_ONCE")
# Notifications (jobs.engine.notify): Django's mail settings and the webhooks' knobs.
COREBOARD_PUBLIC_URL = config.string("COREBOARD_PUBLIC_URL").rstrip("/")
EMAIL_BACKEND = config.string("EMAIL_BACKEND")
EMAIL_HOST = config.string("EMAIL_HOST")
EMAIL_PORT = config.integer("EMAIL_PORT")
EMAIL_HOST_USER = config.string("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = config.string("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = config.boolean("EMAIL_USE_TLS")
EMAIL_USE_SSL = config.boolean("EMAIL_USE_SSL")
EMAIL_TIMEOUT = config.integer("EMAIL_TIMEOUT")
DEFAULT_FROM_EMAIL = config.string("DEFAULT_FROM_EMAIL")
COREBOARD_WEBHOOK_ALLOW_PRIVATE = config.boolean("COREBOARD_WEBHOOK_ALLOW_PRIVATE")
COREBOARD_WEBHOOK_TIMEOUT_S = config.integer("COREBOARD_WEBHOOK_TIMEOUT_S")
COREBOARD_WEBHOOK_RESPONSE_BYTES = config.integer("COREBOARD_WEBHOOK_RESPONSE_BYTES")
COREBOARD_NOTIFY_MAX_RETRIES = config.integer("COREBOARD_NOTIFY_MAX_RETRIES")
COREBOARD_NOTIFY_RETRY_BASE_S = config.integer("COREBOARD_NOTIFY_RETRY_BASE_S")
COREBOARD_NOTIFY_RETRY_MAX_S = config.integer("COREBOARD_NOTIFY_RETRY_MAX_S")
COREBOARD_WEBHOOKS_PER_PERSON = config.integer("COREBOARD_WEBHOOKS_PER_PERSON")
COREBOARD_CHUNK_MAX_RETRIES = config.integer("COREBOARD_CHUNK_MAX_RETRIES")
COREBOARD_CHUNK_MAX_ATTEMPTS = config.integer("COREBOARD_CHUNK_MAX_ATTEMPTS")
COREBOARD_CANCEL_POLL_MS = config.integer("COREBOARD_CANCEL_POLL_MS")
COREBOARD_PROGRESS_INTERVAL_MS = config.integer("COREBOARD_PROGRESS_INTERVAL_MS")
COREBOARD_PUBLISH_INTERVAL_MS = config.integer("COREBOARD_PUBLISH_INTERVAL_MS")
# The execution engine (jobs.engine: slots, leases, the reconciler).
COREBOARD_LEASE_MS = config.integer("COREBOARD_LEASE_MS")
COREBOARD_RECONCILE_MS = config.integer("COREBOARD_RECONCILE_MS")
COREBOARD_SLOT_SLICE_MS = config.integer("COREBOARD_SLOT_SLICE_MS")
COREBOARD_FLUSH_MS = config.integer("COREBOARD_FLUSH_MS")
COREBOARD_BATCH_TARGET_MS = config.integer("COREBOARD_BATCH_TARGET_MS")
COREBOARD_OWNER_MAX_SLOTS = config.integer("COREBOARD_OWNER_MAX_SLOTS")
COREBOARD_PRIORITY_AGING_S = config.integer("COREBOARD_PRIORITY_AGING_S")
COREBOARD_TOKEN_EXPIRY_DAYS = config.integer("COREBOARD_TOKEN_EXPIRY_DAYS")
# /metrics: besides a staff member's API token, addresses (or networks) that may scrape.
COREBOARD_METRICS_ALLOWED_IPS = config.strings("COREBOARD_METRICS_ALLOWED_IPS")

# --- Auth, API, i18n, static ----------------------------------------------------------------

# Failed logins (both login forms: /accounts/login/ and the admin's) are counted by
# django-axes in the cache (project.logins): after COREBOARD_LOGIN_FAILURE_LIMIT in a row a
# username is refused (429) for COREBOARD_LOGIN_LOCKOUT_S to the address that failed it,
# the right password included; elsewhere its owner still logs in, so a stranger cannot lock
# anyone out. An address is refused after COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT failures
# whatever the usernames (password spraying). The address is REMOTE_ADDR (axes' default),
# never a header a client could forge.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "project.logins.LoginLockouts"
AXES_FAILURE_LIMIT = config.integer("COREBOARD_LOGIN_FAILURE_LIMIT")
AXES_COOLOFF_TIME = timedelta(seconds=config.integer("COREBOARD_LOGIN_LOCKOUT_S"))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT = config.integer("COREBOARD_LOGIN_ADDRESS_FAILURE_LIMIT")

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
    # OPTIONS says the methods and points at /api/schema/ (DRF's default walked serializers
    # some views do not have: a 500).
    "DEFAULT_METADATA_CLASS": "jobs.api.metadata.ApiMetadata",
    # Per person (per address when logged out); 429 with Retry-After beyond (docs/security.md).
    "DEFAULT_THROTTLE_RATES": {
        "job-create": config.string("COREBOARD_RATE_JOB_CREATE"),
        "job-preview": config.string("COREBOARD_RATE_JOB_PREVIEW"),
        "job-action": config.string("COREBOARD_RATE_JOB_ACTION"),
        "upload": config.string("COREBOARD_RATE_UPLOAD"),
    },
    "DEFAULT_PARSER_CLASSES": [
        "jobs.api.parsers.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}

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
    # Deep links put a link inside each operation's toggle button (axe: nested-interactive);
    # the examples' highlighting colours fall short of 4.5:1 contrast (axe: color-contrast).
    "SWAGGER_UI_SETTINGS": {"deepLinking": False, "syntaxHighlight": {"activated": False}},
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "ChunkStatusEnum": "jobs.models.Chunk.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.openapi.add_components",
    ],
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = config.string("TIME_ZONE")
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
MEDIA_ROOT = str(paths.media_root())
# Uploads and results are for the service account only (and its group), not other users.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750
# WhiteNoise serves straight from the finders, so no collectstatic step is needed to run.
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": config.string("LOG_LEVEL")},
}
