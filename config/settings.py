"""Intake settings: one module, configured from the environment (django-environ).

Required: ``SECRET_KEY``, ``DATABASE_URL``, ``REDIS_URL`` (``make run`` and ``make test`` set
them, starting private servers when no URL is given). Everything else has a default.
"""

from __future__ import annotations

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY")  # no default: fails loudly (ImproperlyConfigured)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_rq",
    "channels",
    "imports",
    "enrichment",
    "realtime",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # serves static files (ours and the admin's) from daphne itself: no separate web server
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    # a NUL in a page's or the admin's parameters, or a value the database refuses: 400
    "config.refused_values.RefusedValuesMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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

DATABASES = {"default": env.db_url("DATABASE_URL")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL")

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
}

# Pub/Sub layer: one PUBLISH per group whatever its size (the core layer works per member and
# drops over capacity silently). Loss while it reconnects is covered by the Redis Stream log.
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        # Pub/Sub channels belong to the whole server, not to REDIS_URL's database: two
        # deployments (or test runs) on one Redis tell theirs apart by this prefix
        "CONFIG": {
            "hosts": [REDIS_URL],
            "prefix": env.str("CHANNEL_LAYER_PREFIX", default="intake:layer"),
        },
    }
}

RQ_QUEUES = {
    name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": env.int("RQ_DEFAULT_TIMEOUT", default=3600)}
    for name in ("high", "default", "low")
}
RQ = {"COMMIT_MODE": "on_db_commit", "WORKER_CLASS": "imports.worker.IntakeWorker"}
# the CPU priority (nice) of workers: below the web process, whose streams are latency work
# (imports/worker.py); 0 leaves them at the priority they were started with
WORKER_NICE = env.int("WORKER_NICE", default=10)
# daphne's own nice, applied at its start-up when below the one it was started with (raising
# priority needs CAP_SYS_NICE: otherwise a warning, and the service manager's Nice= or
# CPUWeight= is the way). 0: as started. docs/operations.md, "CPU priority".
DAPHNE_NICE = env.int("DAPHNE_NICE", default=0)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Only for a deployment that runs collectstatic (then set WHITENOISE_USE_FINDERS=false)
STATIC_ROOT = env.str("STATIC_ROOT", default="") or None
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "var" / "media")))
MEDIA_URL = "media/"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Without collectstatic, WhiteNoise serves straight from the finders (app and project static);
# a deployment that runs collectstatic can turn this off.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=True)
WHITENOISE_AUTOREFRESH = DEBUG

REST_FRAMEWORK = {
    # Token first, so an anonymous API call gets 401 with WWW-Authenticate rather than 403
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # limit/offset with a hard cap on limit (imports/pagination.py, docs/limits.md)
    "DEFAULT_PAGINATION_CLASS": "imports.pagination.IntakePagination",
    # DRF's JSON, escaped where UTF-8 cannot hold a text (imports/renderers.py)
    "DEFAULT_RENDERER_CLASSES": [
        "imports.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "imports.api_errors.exception_handler",
}

# Every list endpoint: ``limit`` (alias ``page_size``) defaults to this and is clamped to the max.
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
API_MAX_PAGE_SIZE = env.int("API_MAX_PAGE_SIZE", default=500)

SPECTACULAR_SETTINGS = {
    "TITLE": "Intake API",
    "DESCRIPTION": "Catalogue imports, enrichment and purchase orders, with live job progress.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # the SSE endpoints and the WebSocket are ASGI routes: realtime.openapi describes them
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "imports.openapi.add_error_responses",
        "realtime.openapi.add_stream_paths",
    ],
}

# Uploads: the limit is enforced by the API (413) before a job is created.
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# an admin action (delete, cancel, retry) runs on at most this many objects at a time
ADMIN_ACTION_MAX_OBJECTS = env.int("ADMIN_ACTION_MAX_OBJECTS", default=1000)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Django's two handlers, hashing each upload as its chunks arrive (imports/uploads.py)
FILE_UPLOAD_HANDLERS = [
    "imports.uploads.HashingMemoryFileUploadHandler",
    "imports.uploads.HashingTemporaryFileUploadHandler",
]
# An upload identical to one the organization imported this many days back gets a warning.
IMPORT_DUPLICATE_DAYS = env.int("IMPORT_DUPLICATE_DAYS", default=30)
# rows per batch when an upload names none; 0 sizes them automatically (500 doubling to
# 5,000: imports/pipeline/validator_process.py), the fast path
IMPORT_BATCH_SIZE = env.int("IMPORT_BATCH_SIZE", default=0)
# database connections that write one product import's batches side by side (commits stay
# in file order: imports/pipeline/product_import.py, ``Writers``). One: a product row costs the
# database little (two B-trees), and a second writer made 1M new products 2-11 % slower.
IMPORT_WRITERS = max(env.int("IMPORT_WRITERS", default=1), 1)
# the widest header an upload may have (the mapping step and the fix-rows form show every column)
IMPORT_MAX_COLUMNS = env.int("IMPORT_MAX_COLUMNS", default=500)
# a form field per cell of the fix-rows form (50 rows of up to IMPORT_MAX_COLUMNS cells, plus two
# per row) and of the mapping form: Django's default of 1,000 refused a 20-column page (a 400)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50 * (IMPORT_MAX_COLUMNS + 2) + 100
IMPORT_MAX_STORED_ERRORS = env.int("IMPORT_MAX_STORED_ERRORS", default=1000)
# fixing failed rows: how many corrected rows one request may send
IMPORT_FIX_MAX_ROWS = env.int("IMPORT_FIX_MAX_ROWS", default=1000)
# exports of more rows than this run as a background job with a download link
EXPORT_STREAM_MAX_ROWS = env.int("EXPORT_STREAM_MAX_ROWS", default=100_000)
# of those, what every job snapshot (API, events) carries: events go out several times a second
JOB_SNAPSHOT_ERRORS = env.int("JOB_SNAPSHOT_ERRORS", default=50)
# A few progress events per second per job at most; stage and terminal events are never throttled.
PROGRESS_MIN_INTERVAL = env.float("PROGRESS_MIN_INTERVAL", default=0.25)

# BOM enrichment (enrichment/): component-import batch, the largest BOM accepted, the lines
# matched per set-based round, and the trigram similarity that proposes candidates.
COMPONENT_IMPORT_BATCH_SIZE = env.int("COMPONENT_IMPORT_BATCH_SIZE", default=5000)
# two: a component row carries four B-trees, and the database's share is most of the import
COMPONENT_IMPORT_WRITERS = max(env.int("COMPONENT_IMPORT_WRITERS", default=2), 1)
BOM_MAX_LINES = env.int("BOM_MAX_LINES", default=50_000)
ENRICHMENT_CHUNK_LINES = env.int("ENRICHMENT_CHUNK_LINES", default=2000)
ENRICHMENT_SIMILARITY = env.float("ENRICHMENT_SIMILARITY", default=0.45)

REALTIME = {
    "JOB_LOG_TTL_SECONDS": env.int("REALTIME_JOB_LOG_TTL", default=24 * 3600),
    "ORG_LOG_MAXLEN": env.int("REALTIME_ORG_LOG_MAXLEN", default=10_000),
    "JOB_LOG_MAXLEN": env.int("REALTIME_JOB_LOG_MAXLEN", default=50_000),
    "HEARTBEAT_SECONDS": env.float("REALTIME_HEARTBEAT_SECONDS", default=15.0),
    "MAX_STREAMS_PER_USER": env.int("REALTIME_MAX_STREAMS_PER_USER", default=20),
    "QUEUE_SIZE": env.int("REALTIME_QUEUE_SIZE", default=1000),
    "RETRY_MS": 3000,
    # the browser module: first reconnect delay (doubling to 30 s) and the fallback poll interval
    "BROWSER_RETRY_MS": env.int("REALTIME_BROWSER_RETRY_MS", default=3000),
    "BROWSER_POLL_MS": env.int("REALTIME_BROWSER_POLL_MS", default=30_000),
    "METRICS_TOKEN": env.str("METRICS_TOKEN", default=""),
    # a job stuck in processing this long without a heartbeat, and no live worker on it, is lost
    "WORKER_LOST_AFTER_SECONDS": env.int("WORKER_LOST_AFTER_SECONDS", default=60),
    # a process's open streams leave the gauge this long after its last metrics flush (2 s
    # apart): what a crashed daphne still counts for
    "METRICS_PROCESS_TTL": env.float("REALTIME_METRICS_PROCESS_TTL", default=15.0),
}
# Recovery (imports/recovery.py): a lost job is resumed after its checkpoint up to this many
# attempts in all; workers with their scheduler check for lost, orphaned and stalled jobs
# every JOB_CHECK_SECONDS; a running job whose heartbeat is older than JOB_STALLED_AFTER_SECONDS
# shows ``stalled: true``.
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
JOB_CHECK_SECONDS = env.float("JOB_CHECK_SECONDS", default=15.0)
JOB_STALLED_AFTER_SECONDS = env.float("JOB_STALLED_AFTER_SECONDS", default=30.0)
# a queued job that a worker took off its queue and never started (imports/recovery.py) is
# queued again once checks have seen it so for this long; a worker taking a job looks the same
# for a few milliseconds
JOB_TAKEN_GRACE_SECONDS = env.float("JOB_TAKEN_GRACE_SECONDS", default=5.0)
# A database outage (imports/outages.py): a batch or a job-row write is tried again on a new
# connection, with backoff, for this long; then the attempt stops and the job resumes.
DB_OUTAGE_RETRY_SECONDS = env.float("DB_OUTAGE_RETRY_SECONDS", default=60.0)
# Time limits (config/database_timeouts.py). Web requests answer people: a statement or a lock
# wait that long is a 503, not a hung request. Workers run big COPYs and upserts, so theirs are
# wider; a batch's statement past it is an outage (the batch is redone), never a row error.
DB_TIMEOUTS = {
    "web": (
        env.int("DB_WEB_STATEMENT_TIMEOUT_MS", default=30_000),
        env.int("DB_WEB_LOCK_TIMEOUT_MS", default=5_000),
    ),
    "worker": (
        env.int("DB_WORKER_STATEMENT_TIMEOUT_MS", default=600_000),
        env.int("DB_WORKER_LOCK_TIMEOUT_MS", default=60_000),
    ),
}
# The import's writer thread must hand back a batch within this long (it is joined with it).
IMPORT_WRITER_TIMEOUT_SECONDS = env.float("IMPORT_WRITER_TIMEOUT_SECONDS", default=900.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

# Purchase orders (imports/purchasing, docs/purchase-orders.md)
PO_MIN_CONFIDENCE = env.float("PO_MIN_CONFIDENCE", default=0.8)
PO_MAX_UPLOAD_BYTES = env.int("PO_MAX_UPLOAD_BYTES", default=20 * 1024 * 1024)
# the most lines an order may have: its page and its review read every parsed line per view
PO_MAX_LINES = env.int("PO_MAX_LINES", default=20_000)
# Outbound hosts (store sync, image fetches): empty = any host whose every address is public;
# otherwise only the listed hosts (exact, or ".example.com" for subdomains), private or not.
SYNC_ALLOWED_HOSTS = env.list("SYNC_ALLOWED_HOSTS", default=[])
PO_SYNC_BATCH_SIZE = min(env.int("PO_SYNC_BATCH_SIZE", default=250), 250)
PO_SYNC_TIMEOUT = env.float("PO_SYNC_TIMEOUT", default=10.0)
PO_SYNC_MAX_SECONDS = env.float("PO_SYNC_MAX_SECONDS", default=30.0)
PO_SYNC_MAX_ATTEMPTS = env.int("PO_SYNC_MAX_ATTEMPTS", default=5)
PO_SYNC_BACKOFF_BASE = env.float("PO_SYNC_BACKOFF_BASE", default=1.0)
PO_SYNC_BACKOFF_MAX = env.float("PO_SYNC_BACKOFF_MAX", default=30.0)
PO_SYNC_MAX_RETRY_AFTER = env.float("PO_SYNC_MAX_RETRY_AFTER", default=120.0)
PO_IMAGE_MAX_BYTES = env.int("PO_IMAGE_MAX_BYTES", default=5 * 1024 * 1024)
PO_IMAGE_TIMEOUT = env.float("PO_IMAGE_TIMEOUT", default=10.0)
PO_IMAGE_CONCURRENCY = env.int("PO_IMAGE_CONCURRENCY", default=8)
PO_IMAGE_MAX_SECONDS = env.float("PO_IMAGE_MAX_SECONDS", default=30.0)
PO_IMAGE_DECODES = env.int("PO_IMAGE_DECODES", default=2)
