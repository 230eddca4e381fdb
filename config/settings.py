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
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "intake:layer"},
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
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "imports.openapi.add_error_responses",
    ],
}

# Uploads: the limit is enforced by the API (413) before a job is created.
IMPORT_MAX_UPLOAD_BYTES = env.int("IMPORT_MAX_UPLOAD_BYTES", default=100 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
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
IMPORT_MAX_STORED_ERRORS = env.int("IMPORT_MAX_STORED_ERRORS", default=1000)
# of those, what every job snapshot (API, events) carries: events go out several times a second
JOB_SNAPSHOT_ERRORS = env.int("JOB_SNAPSHOT_ERRORS", default=50)
# A few progress events per second per job at most; stage and terminal events are never throttled.
PROGRESS_MIN_INTERVAL = env.float("PROGRESS_MIN_INTERVAL", default=0.25)

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
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
