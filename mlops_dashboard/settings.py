"""Settings for the MLOps dashboard.

Every difference between machines comes from an environment variable with a safe default
(SQLite, a local Redis). The README lists them all.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# SECTION: core ---------------------------------------------------------------------------------

DEBUG = env.bool("DJANGO_DEBUG", default=True)
_DEV_SECRET = "dev-insecure-secret-key-change-me-in-production-0123456789abcdef"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "knox",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "mlops_dashboard",
    "pipelines",
    "datasets",
    "training",
    "monitoring",
    "telemetry",
]

MIDDLEWARE = [
    "mlops_dashboard.middleware.ApiTimingMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "mlops_dashboard.middleware.DashboardLoginRequiredMiddleware",
    "mlops_dashboard.middleware.ApiProblemMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a login refused for a lockout into a 429 (AXES_LOCKOUT_CALLABLE).
    "axes.middleware.AxesMiddleware",
]

# Requests of one server process at work in Django at once (the rest wait in the event loop; see
# middleware.RequestSlots, applied in asgi.py).
WEB_MAX_CONCURRENT_REQUESTS = env.int("WEB_MAX_CONCURRENT_REQUESTS", default=10)
# Threads of one server process serving the API's hot endpoints (telemetry ingest and series,
# predictions) for token-authenticated calls, apart from the slots above (fast_routes.py).
API_FAST_THREADS = env.int("API_FAST_THREADS", default=8)
# Processes of a server process predicting requests of 256+ rows, a core each (process_pool.py); 0: off.
API_PROCESSES = env.int("API_PROCESSES", default=min(os.cpu_count() or 1, 4) if (os.cpu_count() or 1) > 1 else 0)
# A request body (not an upload's) must arrive whole within this many seconds, else 408; an upload's
# body must not pause longer than this. Read before the request takes a slot (request_bodies.py).
WEB_BODY_TIMEOUT = env.float("WEB_BODY_TIMEOUT", default=30.0)
# The largest request body outside uploads and the URLs that register their own limit (predictions):
# 413 past it, JSON bodies for DRF included (Django's own check never sees those).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
# The largest body of a request without credentials (login forms): bodies are held in memory until
# whole, and anonymous clients can open many connections.
WEB_ANONYMOUS_MAX_BODY = env.int("WEB_ANONYMOUS_MAX_BODY", default=65_536)

ROOT_URLCONF = "mlops_dashboard.urls"
ASGI_APPLICATION = "mlops_dashboard.asgi.application"
WSGI_APPLICATION = None

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
                "mlops_dashboard.context_processors.realtime",
                "mlops_dashboard.context_processors.projects",
            ],
        },
    },
]

# SECTION: database -----------------------------------------------------------------------------

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (server, workers, beat) share one file: WAL plus IMMEDIATE transactions
    # turn "database is locked" into a short wait.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file (not memory) so that worker and server subprocesses of the tests share it.
    # One per test run, so that two runs in one checkout don't share it.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / ".run" / f"test-db-{os.getpid()}.sqlite3")}
else:
    # Under ASGI every request runs its sync code in a thread of its own, so persistent connections
    # (CONN_MAX_AGE > 0) pile up to PostgreSQL's limit: bench/load.py saw 99 connections and 500s
    # within seconds. A pool per process instead: at most DATABASE_POOL_SIZE connections, reused
    # (no connect per request); a request waits for a free one. DATABASE_POOL_SIZE=0: no pool, a
    # connection per request or task (then DATABASE_CONN_MAX_AGE applies; keep it 0 for servers).
    pool_size = env.int("DATABASE_POOL_SIZE", default=12)
    if pool_size > 0:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1, "max_size": pool_size, "timeout": 30, "max_idle": 300,
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        DATABASES["default"]["ENGINE"] = "mlops_dashboard.postgresql"  # Django's, with a cheaper pool check
    else:
        DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=0))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
# A pooled connection given back less than this ago is handed out without a check (postgresql/base.py).
DATABASE_POOL_CHECK_IDLE_SECONDS = env.float("DATABASE_POOL_CHECK_IDLE_SECONDS", default=1.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# SECTION: redis, cache, channels ---------------------------------------------------------------

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key and channel this instance writes starts with this prefix, so that several instances
# (and the test suite) can share one Redis.
REDIS_KEY_PREFIX = env.str("REDIS_KEY_PREFIX", default="mlops")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": f"{REDIS_KEY_PREFIX}:cache",
    }
}

CHANNEL_LAYERS = {
    "default": {
        # channels_redis' pub/sub layer (one Redis subscription per server process, fanned out
        # inside it), plus a resync after Redis comes back and a bounded backlog per socket: a
        # socket that falls WS_MAX_BACKLOG events behind is closed and replays from the log.
        "BACKEND": "mlops_dashboard.events.layer.EventsChannelLayer",
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": f"{REDIS_KEY_PREFIX}:layer:",
            "max_backlog": env.int("WS_MAX_BACKLOG", default=1000),
        },
    }
}

# SECTION: events -------------------------------------------------------------------------------

EVENT_LOG_SIZE = env.int("EVENT_LOG_SIZE", default=10_000)
# The log is also bounded by the bytes of its events' text (frames of up to 64 KiB would otherwise
# let 10,000 events hold 640 MB of Redis memory, replayed to every reconnecting client).
EVENT_LOG_MAX_BYTES = env.int("EVENT_LOG_MAX_BYTES", default=64 * 1024 * 1024)
# One page of GET /api/events/ holds at most this many bytes of events (has_more says there is more).
EVENTS_PAGE_MAX_BYTES = env.int("EVENTS_PAGE_MAX_BYTES", default=1024 * 1024)
# A progress topic gets at most one event per this many seconds per job (always the first and last).
EVENT_PROGRESS_INTERVAL = env.float("EVENT_PROGRESS_INTERVAL", default=0.25)
WS_MAX_MESSAGE_BYTES = 64 * 1024
# An event still over WS_MAX_MESSAGE_BYTES once its lists are shortened raises (on in the tests, so a
# value not capped where it entered fails loudly); off, its longest strings are cut and it is logged.
EVENT_OVERSIZE_STRICT = env.bool("EVENT_OVERSIZE_STRICT", default=False)
WS_MAX_SUBSCRIPTIONS = env.int("WS_MAX_SUBSCRIPTIONS", default=200)
# Open sockets per user across every server process (past it: close 4429); 0 for no limit.
WS_MAX_SOCKETS_PER_USER = env.int("WS_MAX_SOCKETS_PER_USER", default=20)
# Each socket's count is a lease its server renews; a killed server's sockets stop counting after it.
WS_SOCKET_LEASE_SECONDS = env.float("WS_SOCKET_LEASE_SECONDS", default=60.0)
# Client messages per second per socket, with a burst: past it an `error`, then close 1008.
WS_MESSAGE_RATE = env.float("WS_MESSAGE_RATE", default=10.0)
WS_MESSAGE_BURST = env.int("WS_MESSAGE_BURST", default=50)
# Origins allowed besides the site's own (ALLOWED_HOSTS at the port it is reached on, and
# CSRF_TRUSTED_ORIGINS): exact scheme://host[:port], e.g. a separate front-end's.
ALLOWED_ORIGINS = env.list("DJANGO_ALLOWED_ORIGINS", default=[])
# While Redis is unreachable (a restart, a failover), a publish retries this long before the event
# is dropped (the database stays the truth; clients that missed it are told `replay_gap`).
EVENT_PUBLISH_RETRY_SECONDS = env.float("EVENT_PUBLISH_RETRY_SECONDS", default=10.0)

# SECTION: datasets ------------------------------------------------------------------------------

# Enforced while the body streams in (datasets/upload.py) and again on the stored file.
DATASET_MAX_UPLOAD_MB = env.int("DATASET_MAX_UPLOAD_MB", default=512)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024  # larger uploads go to a temporary file, not memory
# Uploads of one user streaming at once, across every server process (a Redis lease each); past it, 429.
UPLOADS_PER_USER = env.int("UPLOADS_PER_USER", default=3)

# SECTION: celery -------------------------------------------------------------------------------

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
    # Longer than the longest task (a pipeline run's hard limit, 7,260 s): a task still running is
    # never handed to a second worker. A redelivered task finds its row claimed and does nothing.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=7800),
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=1800)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=1860)
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    # Jobs whose worker died (SIGKILL, OOM, lost machine) end `failed` within a minute.
    "reap-stale-jobs": {"task": "mlops_dashboard.jobs_recover", "schedule": env.float("REAPER_INTERVAL", default=10.0)},
    # Queued pipeline runs whose slot freed while no run ended (or whose message was lost) start.
    "kick-queued-pipeline-runs": {
        "task": "pipelines.pipeline_runs_kick", "schedule": env.float("PIPELINE_KICK_INTERVAL", default=30.0),
    },
}
CELERY_TIMEZONE = "UTC"

# Celery workers' CPU priority below the web servers' (a nice increment, 0-19; 0: the same). Training
# and profiling take every cycle they can get: on a machine that also runs ASGI servers, sockets and
# API calls would otherwise wait for a core behind batch work (the load bench measured server loops
# waiting in the run queue more than they ran). Idle cycles still all go to the workers.
WORKER_NICE = env.int("WORKER_NICE", default=10)

# SECTION: training -----------------------------------------------------------------------------

# Per-job time limits (seconds): past the soft one a job fails with TIMEOUT; the hard one kills it.
TRAINING_SOFT_TIME_LIMIT = env.int("TRAINING_SOFT_TIME_LIMIT", default=1800)
TRAINING_HARD_TIME_LIMIT = env.int("TRAINING_HARD_TIME_LIMIT", default=1860)
# BLAS/OpenMP threads per training job: each pool process runs one job, so more oversubscribes.
TRAINING_THREADS = env.int("TRAINING_THREADS", default=1)
# Rows a job trains on at most: a larger dataset is sampled (stratified by class for classification).
TRAINING_MAX_ROWS = env.int("TRAINING_MAX_ROWS", default=1_000_000)
# Prediction counts are kept in Redis (exact wherever shown) and written to the database this often (s).
PREDICTION_FLUSH_SECONDS = env.float("PREDICTION_FLUSH_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULE["prediction-counts-flush"] = {
    "task": "training.prediction_counts_flush", "schedule": PREDICTION_FLUSH_SECONDS,
    "options": {"expires": PREDICTION_FLUSH_SECONDS},
}

# SECTION: pipelines ----------------------------------------------------------------------------

# Runs of one pipeline at a time (a pipeline's own max_concurrent_runs starts from this); more wait queued.
PIPELINE_MAX_CONCURRENT_RUNS = env.int("PIPELINE_MAX_CONCURRENT_RUNS", default=1)  # 1-10 (pipelines.models)
# A pipeline's cron schedule may not fire more often than this (each run holds a worker; 0: no limit).
PIPELINE_MIN_SCHEDULE_MINUTES = env.int("PIPELINE_MIN_SCHEDULE_MINUTES", default=5)
# How long a run waits for its input dataset to finish validating/profiling before failing (s).
PIPELINE_DATASET_WAIT = env.int("PIPELINE_DATASET_WAIT", default=300)
# Time limits (s) of one whole run; its steps run inside it.
PIPELINE_SOFT_TIME_LIMIT = env.int("PIPELINE_SOFT_TIME_LIMIT", default=7200)
PIPELINE_HARD_TIME_LIMIT = env.int("PIPELINE_HARD_TIME_LIMIT", default=7260)

# SECTION: monitoring ---------------------------------------------------------------------------

# Background monitoring: each worker and ASGI process's metrics collector, the service checks and the
# alert rules. The test suite turns it off (tests/env.py), so that periodic events never interleave
# with the events a test counts; the monitoring tests turn it on for the processes they start.
MONITORING_ENABLED = env.bool("MONITORING_ENABLED", default=True)
# Which collector this process runs: auto (ASGI servers and Celery workers), asgi, worker or off.
MONITORING_COLLECTOR_ROLE = env.str("MONITORING_COLLECTOR_ROLE", default="auto")
MONITORING_HOST = env.str("MONITORING_HOST", default="")  # the host's name in metrics; default: hostname
MONITORING_INTERVAL = env.int("MONITORING_INTERVAL", default=5)  # seconds between samples of one host
MONITORING_CHECK_INTERVAL = env.int("MONITORING_CHECK_INTERVAL", default=15)  # service checks
MONITORING_ROLLUP_INTERVAL = env.int("MONITORING_ROLLUP_INTERVAL", default=60)  # downsample and prune
MONITORING_RAW_RETENTION_HOURS = env.int("MONITORING_RAW_RETENTION_HOURS", default=24)
MONITORING_MINUTE_RETENTION_DAYS = env.int("MONITORING_MINUTE_RETENTION_DAYS", default=30)
MONITORING_DISK_PATH = env.str("MONITORING_DISK_PATH", default="/")
# Health levels: (warning, critical) per metric; a level is left only below threshold × (1 - hysteresis).
MONITORING_THRESHOLDS = {
    "cpu_percent": (env.float("MONITORING_CPU_WARNING", default=80.0), env.float("MONITORING_CPU_CRITICAL", default=95.0)),
    "memory_percent": (env.float("MONITORING_MEMORY_WARNING", default=85.0), env.float("MONITORING_MEMORY_CRITICAL", default=95.0)),
    "disk_percent": (env.float("MONITORING_DISK_WARNING", default=85.0), env.float("MONITORING_DISK_CRITICAL", default=95.0)),
    "api_response_time_ms": (env.float("MONITORING_API_MS_WARNING", default=1000.0), env.float("MONITORING_API_MS_CRITICAL", default=3000.0)),
}
MONITORING_HYSTERESIS = env.float("MONITORING_HYSTERESIS", default=0.05)
# Streaming anomalies: robust z-score (median/MAD) over the last WINDOW samples of each series.
MONITORING_ANOMALY_WINDOW = env.int("MONITORING_ANOMALY_WINDOW", default=60)
MONITORING_ANOMALY_MIN_SAMPLES = env.int("MONITORING_ANOMALY_MIN_SAMPLES", default=20)
MONITORING_ANOMALY_THRESHOLD = env.float("MONITORING_ANOMALY_THRESHOLD", default=6.0)
MONITORING_ANOMALY_COOLDOWN = env.int("MONITORING_ANOMALY_COOLDOWN", default=60)  # s between anomalies of a series
# Per-metric overrides of monitoring/anomaly.py's METRICS table, as JSON {metric: {field: value}}; fields:
# direction (up|down|both), min_change, relative_change, agree, of, score, alerts, floor, relative_floor.
# E.g. MONITORING_ANOMALY_METRICS='{"cpu_percent": {"alerts": true}, "net_recv_rate": {"min_change": 5e7}}'
MONITORING_ANOMALY_METRICS = env.json("MONITORING_ANOMALY_METRICS", default={})
# A job is stalled after 3× its usual progress interval; before it has one, this is its usual interval.
MONITORING_STALL_DEFAULT_INTERVAL = env.int("MONITORING_STALL_DEFAULT_INTERVAL", default=60)
CELERY_BEAT_SCHEDULE.update(
    {
        # Each is a no-op while MONITORING_ENABLED is false (rollup always runs).
        "monitoring-collect": {"task": "monitoring.metrics_collect", "schedule": float(MONITORING_INTERVAL),
                               "options": {"expires": MONITORING_INTERVAL}},
        "monitoring-check": {"task": "monitoring.monitoring_check", "schedule": float(MONITORING_INTERVAL),
                             "options": {"expires": MONITORING_INTERVAL}},
        "monitoring-rollup": {"task": "monitoring.metrics_rollup", "schedule": float(MONITORING_ROLLUP_INTERVAL)},
    }
)

# SECTION: telemetry ---------------------------------------------------------------------------

# Series from any source (machines, services, models) through POST /api/telemetry/.
TELEMETRY_MAX_SOURCES = env.int("TELEMETRY_MAX_SOURCES", default=1000)  # per project; past it, 400
TELEMETRY_MAX_METRICS = env.int("TELEMETRY_MAX_METRICS", default=100)  # per source; past it, 400
TELEMETRY_MAX_POINTS = env.int("TELEMETRY_MAX_POINTS", default=10_000)  # per ingest request; past it, 413
# A source is silent after this many times its expected interval without a reading.
TELEMETRY_SILENT_FACTOR = env.int("TELEMETRY_SILENT_FACTOR", default=3)
# Retention per resolution: raw points, per-minute and per-hour rollups (days).
TELEMETRY_RAW_RETENTION_DAYS = env.int("TELEMETRY_RAW_RETENTION_DAYS", default=30)
TELEMETRY_MINUTE_RETENTION_DAYS = env.int("TELEMETRY_MINUTE_RETENTION_DAYS", default=90)
TELEMETRY_HOUR_RETENTION_DAYS = env.int("TELEMETRY_HOUR_RETENTION_DAYS", default=730)
# A chart without an explicit resolution gets at most about this many points.
TELEMETRY_MAX_CHART_POINTS = env.int("TELEMETRY_MAX_CHART_POINTS", default=2000)
# Storage: on PostgreSQL beat makes the partitions of the coming days and drops expired ones (raw
# points by day, minute rollups by week, hour rollups by month); on SQLite it deletes expired rows.
TELEMETRY_PARTITIONS_AHEAD_DAYS = env.int("TELEMETRY_PARTITIONS_AHEAD_DAYS", default=7)
TELEMETRY_PARTITIONS_INTERVAL = env.float("TELEMETRY_PARTITIONS_INTERVAL", default=3600.0)  # s
# Stored rollups of freshly written minutes are recomputed this often (s); charts are never stale (the
# series selector computes the not yet refreshed minutes from the raw points).
TELEMETRY_ROLLUP_INTERVAL = env.float("TELEMETRY_ROLLUP_INTERVAL", default=5.0)
CELERY_BEAT_SCHEDULE["telemetry-partitions"] = {
    "task": "telemetry.partitions_maintain", "schedule": TELEMETRY_PARTITIONS_INTERVAL,
}
CELERY_BEAT_SCHEDULE["telemetry-rollups"] = {
    "task": "telemetry.rollups_refresh", "schedule": TELEMETRY_ROLLUP_INTERVAL,
    "options": {"expires": TELEMETRY_ROLLUP_INTERVAL},
}
# The most rows GET /api/telemetry/series/ returns (past it, 400 asking for a coarser resolution or a
# shorter range): 50,000 raw points are about 1.5 MB of JSON, as many rollups about 4 MB.
TELEMETRY_MAX_SERIES_POINTS = env.int("TELEMETRY_MAX_SERIES_POINTS", default=50_000)
# `make run` simulates a small plant (4 machines) through the ingest API, labelled as demo data.
DEMO_TELEMETRY = env.bool("DEMO_TELEMETRY", default=True)
# Streaming anomaly detection of every new reading (monitoring): overrides of the telemetry default
# spec for every series, as JSON {field: value} (monitoring/telemetry_detector.py's SeriesSpec:
# enabled, direction, min_change, relative_change, agree, of, score, threshold, alerts, floor,
# relative_floor, window, min_samples, stuck, clear, cooldown); a metric's own `anomaly` applies on top.
TELEMETRY_ANOMALY_DEFAULTS = env.json("TELEMETRY_ANOMALY_DEFAULTS", default={})
# At most this many new readings of one series are scored per ingest request (the newest; a backfill
# of history is not streamed through the detector point by point).
TELEMETRY_ANOMALY_MAX_POINTS = env.int("TELEMETRY_ANOMALY_MAX_POINTS", default=2000)
# Silent sources are looked for this often (s); each opens an alert under the telemetry-silent rule.
CELERY_BEAT_SCHEDULE["telemetry-silent-check"] = {
    "task": "monitoring.telemetry_silent_check", "schedule": float(env.int("TELEMETRY_SILENT_CHECK_INTERVAL", default=15)),
    "options": {"expires": 15},
}

# SECTION: notifications -------------------------------------------------------------------------

# Where messages link to: the dashboard's address as its users reach it (no trailing slash).
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Alerts of one rule that open within this many seconds go out as one message (the first waits this long).
NOTIFY_GROUP_SECONDS = env.int("NOTIFY_GROUP_SECONDS", default=30)
# A delivery is tried this many times, waiting NOTIFY_RETRY_BASE_SECONDS × 2^(attempt-1) between tries.
NOTIFY_MAX_ATTEMPTS = env.int("NOTIFY_MAX_ATTEMPTS", default=5)
NOTIFY_RETRY_BASE_SECONDS = env.float("NOTIFY_RETRY_BASE_SECONDS", default=30.0)
# Seconds one send may take (connect and answer) before it counts as failed.
NOTIFY_TIMEOUT_SECONDS = env.float("NOTIFY_TIMEOUT_SECONDS", default=15.0)
# Failed attempts in a row after which a channel's own system alert opens (sent on the other channels).
NOTIFY_CHANNEL_FAILURES_ALERT = env.int("NOTIFY_CHANNEL_FAILURES_ALERT", default=3)
# How often beat sends due groups and repeats (seconds).
NOTIFY_SWEEP_INTERVAL = env.int("NOTIFY_SWEEP_INTERVAL", default=15)
CELERY_BEAT_SCHEDULE["notifications-sweep"] = {
    "task": "monitoring.notifications_sweep", "schedule": float(NOTIFY_SWEEP_INTERVAL),
    "options": {"expires": NOTIFY_SWEEP_INTERVAL},
}

# SECTION: retention -----------------------------------------------------------------------------

# What grows without end is pruned by beat (`mlops_dashboard.retention_prune`): each app prunes its
# own rows (registered in its apps.py, see mlops_dashboard/retention.py). Days; 0 keeps forever.
# The feed is for recent work; a quarter covers any review that looks back at it.
RETENTION_ACTIVITY_DAYS = env.int("RETENTION_ACTIVITY_DAYS", default=90)
# The audit log (every write: who, what, when) is kept apart from the feed, for a year by default.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
# Resolved alerts only (open and acknowledged ones always stay); a quarter of incident history.
RETENTION_ALERTS_DAYS = env.int("RETENTION_ALERTS_DAYS", default=90)
# Finished pipeline runs and their steps (each pipeline's last run always stays).
RETENTION_PIPELINE_RUNS_DAYS = env.int("RETENTION_PIPELINE_RUNS_DAYS", default=90)
# Finished jobs' histories: jobs nothing refers to go, the rest lose their per-epoch history.
RETENTION_JOBS_DAYS = env.int("RETENTION_JOBS_DAYS", default=90)
# Anomalies and finished anomaly detections with their score files (MONITORING_ANOMALY_RETENTION_DAYS,
# its former name, still counts): they are about recent behaviour, and score files are large.
RETENTION_ANOMALIES_DAYS = env.int("RETENTION_ANOMALIES_DAYS",
                                   default=env.int("MONITORING_ANOMALY_RETENTION_DAYS", default=30))
# Files under MEDIA_ROOT that no row refers to go once this old (an upload or a job's output being
# written has no row yet: a day is far beyond the longest of them). 0: never remove them.
RETENTION_ORPHAN_FILES_HOURS = env.int("RETENTION_ORPHAN_FILES_HOURS", default=24)
# Rows deleted per statement: short transactions that never lock a table for long.
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
# How long the storage report (System page, `manage.py storage_report`) is reused, in seconds.
STORAGE_REPORT_CACHE_SECONDS = env.int("STORAGE_REPORT_CACHE_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["retention-prune"] = {
    "task": "mlops_dashboard.retention_prune", "schedule": env.float("RETENTION_PRUNE_INTERVAL", default=3600.0),
}

# SECTION: auth ---------------------------------------------------------------------------------

# A new user belongs to no project until a maintainer adds them. viewer|editor|maintainer here makes
# every new user a member of the "Default" project with that role.
DEFAULT_PROJECT_ROLE = env.str("DEFAULT_PROJECT_ROLE", default="")
if DEFAULT_PROJECT_ROLE not in ("", "viewer", "editor", "maintainer"):
    raise environ.ImproperlyConfigured("DEFAULT_PROJECT_ROLE is one of viewer, editor, maintainer, or empty.")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Axes first: it refuses a locked-out user name and address before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# Lockout (django-axes) of /login/, /admin/login/ and POST /api/auth/token/: after this many failed
# logins for one user name from one address, that pair is refused (429) for the cool-off.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
# Per user name AND address: a guesser can neither lock a user out from everywhere nor try many names.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True  # a successful login forgets that pair's earlier failures
# Failures counted in the database: shared by every server process and machine, kept across a Redis
# restart, rolled back with each test's transaction, and listed (and resettable) in the admin.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# No row per successful login (the activity feed records logins): only failures are kept, and those
# are cleared once their cool-off has passed.
AXES_DISABLE_ACCESS_LOG = True
AXES_LOCKOUT_CALLABLE = "mlops_dashboard.account.lockout_response"
AXES_VERBOSE = False  # no start-up banner in every process
# The client address axes counts: REMOTE_ADDR unless DJANGO_BEHIND_PROXY (then the proxy's X-Forwarded-For).
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if env.bool("DJANGO_BEHIND_PROXY", default=False) else ("REMOTE_ADDR",)
)
AXES_IPWARE_PROXY_ORDER = "right-most"  # the address our proxy appended; the left-most is the client's to forge

# API tokens (django-rest-knox): stored as SHA-512 digests, each with a name, its last use and an expiry.
KNOX_TOKEN_MODEL = "mlops_dashboard.ApiToken"
# knox's own token model is swapped out for ours, so its table is never needed: without this, its
# migrations create one anyway, whose key on auth_user makes PostgreSQL refuse to TRUNCATE users.
MIGRATION_MODULES = {"knox": None}
API_TOKEN_TTL_DAYS = env.int("API_TOKEN_TTL_DAYS", default=90)
# Live tokens one user may hold at once (each POST /api/auth/token/ makes one): a bound, not a quota.
API_TOKENS_PER_USER = env.int("API_TOKENS_PER_USER", default=100)
# Each server process keeps the tokens it has checked, with their users' roles (auth_cache.py), and
# the model versions predictions look up (training/services/serving.py), and reads their change
# counters in Redis at most this often: a revoked token, a deactivated user, a changed membership, a
# deploy or a rollback is honoured everywhere within this many seconds. 0: no cache (queries per call).
AUTH_CACHE_CHECK_SECONDS = env.float("AUTH_CACHE_CHECK_SECONDS", default=1.0)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=API_TOKEN_TTL_DAYS),
    # A fixed expiry: a leaked key stops working on schedule, however much it is used.
    "AUTO_REFRESH": False,
    # New keys start with it, so that secret scanners can recognise a leaked one.
    "TOKEN_PREFIX": "mlops_",
    "AUTH_HEADER_PREFIX": "Token",
}
# Expired tokens are refused as soon as they expire; this deletes their rows (through the ORM).
CELERY_BEAT_SCHEDULE["prune-expired-api-tokens"] = {
    "task": "mlops_dashboard.api_tokens_prune_expired", "schedule": env.float("API_TOKEN_PRUNE_INTERVAL", default=3600.0),
}

# SECTION: REST API -----------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Tokens first: an anonymous or refused request gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "mlops_dashboard.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # A scoped token (predict, telemetry) reaches only the views declaring its scope in `token_scopes`.
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "mlops_dashboard.tokens.TokenScopePermission",
    ],
    "DEFAULT_SCHEMA_CLASS": "mlops_dashboard.schema.ProblemAutoSchema",
    "EXCEPTION_HANDLER": "mlops_dashboard.api_errors.problem_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "mlops_dashboard.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        "mlops_dashboard.throttles.AnonThrottle",
        "mlops_dashboard.throttles.UserThrottle",
    ],
    # Anonymous clients are counted by REMOTE_ADDR (uvicorn already takes it from a local proxy's
    # X-Forwarded-For): without this, DRF takes the client's own header, and a new value per request
    # escapes the anonymous rate. Set it to the number of proxies only for a server that doesn't.
    "NUM_PROXIES": env.int("API_NUM_PROXIES", default=0),
}
# API requests per client (DRF's "N/second|minute|hour|day"; empty: no limit), counted in Redis
# across processes. Anonymous callers can only ask for a token, so a minute's worth is plenty.
API_THROTTLE_ANON = env.str("API_THROTTLE_ANON", default="60/minute")
# A user's pages and scripts together: a dozen open pages refreshing every 1.5 s stay far below;
# a program predicting faster than 20/s sustained raises it (the benchmarks do).
API_THROTTLE_USER = env.str("API_THROTTLE_USER", default="1200/minute")
# The largest page a list endpoint returns (`limit`); larger asks get 400.
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=1000)
# The OpenAPI schema's title, enum names and offline Swagger UI (nothing in it differs between machines).
from . import api_schema_settings  # noqa: E402

SPECTACULAR_SETTINGS = api_schema_settings.SPECTACULAR_SETTINGS

# SECTION: i18n, static, media ------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# npm packages (installed by `npm ci`) are served from their dist folders, no bundler.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/chart.js", BASE_DIR / "node_modules" / "chart.js" / "dist"),
    ("vendor/idiomorph", BASE_DIR / "node_modules" / "idiomorph" / "dist"),
    ("vendor/uplot", BASE_DIR / "node_modules" / "uplot" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
MEDIA_URL = "/media/"

# SECTION: security (production: DJANGO_DEBUG=false) --------------------------------------------

SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_PROXY", default=False) else None
# No inline script or style anywhere (page data travels in json_script, widths in pct-N classes): an
# injected <script> or style= does nothing. 'self' covers same-origin ws:/wss: too (CSP3), checked by
# tests/browser/test_csp.py.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    },
}
# Debug pages and error mails: Django's filter hides secret-looking names only; these also hide
# where Redis, the broker, the channel layer and the database live, and their passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "mlops_dashboard.error_reports.ServiceSecretsFilter"
DEFAULT_EXCEPTION_REPORTER = "mlops_dashboard.error_reports.ServiceSecretsReporter"

# SECTION: logging ------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
