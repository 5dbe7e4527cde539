"""Slipway settings, read from environment variables with safe defaults.

With no variables set Slipway runs embedded: SQLite, a private redis-server on a unix socket as
the Celery broker (started by `manage.py demo`) consumed by a separate worker process, a
filesystem artifact store and local-process serving, all under SLIPWAY_DATA_DIR.
Set DATABASE_URL and REDIS_URL for PostgreSQL and Redis.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
# The pages and their static files live in the slipway package, so an installed copy serves them too.
PACKAGE_DIR = Path(__file__).resolve().parent

env = environ.Env()

DATA_DIR = Path(env.str("SLIPWAY_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()

DEBUG = env.bool("SLIPWAY_DEBUG", default=False)


def _installation_secret(name: str, n_bytes: int) -> str:
    """A per-installation secret kept (0600) in the data folder, never committed; made on first start."""
    path = DATA_DIR / name
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(n_bytes))
    return path.read_text().strip()


SECRET_KEY = env.str("SLIPWAY_SECRET_KEY", default="") or _installation_secret("secret_key", 50)

ALLOWED_HOSTS = env.list("SLIPWAY_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("SLIPWAY_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "axes",
    "csp",
    "releases",
    "webhooks",
    "monitoring",
    "fleet",
]

MIDDLEWARE = [
    "slipway.limits.RequestSizeLimit",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "slipway.auth.ModelBackend"]
# Logins: after 5 failures for one username from one address, that pair waits 15 minutes.
AXES_FAILURE_LIMIT = env.int("SLIPWAY_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("SLIPWAY_LOGIN_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False  # no "AXES: BEGIN" banner from every manage.py command and process

ROOT_URLCONF = "slipway.urls"
WSGI_APPLICATION = "slipway.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "builtins": ["slipway.url_tag"],  # {% url %} with its answers remembered (see there)
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_sqlite_path = DATA_DIR / "slipway.sqlite3"
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{_sqlite_path}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web and worker processes read while one writes; IMMEDIATE transactions take
    # the write lock up front, which is what select_for_update means on SQLite.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("SLIPWAY_DB_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("SLIPWAY_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [PACKAGE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"

# Uploads: only the builds endpoint streams files to the artifact store (releases.uploads.HashingUploadHandler,
# installed by its view after the token is checked); every other URL keeps Django's default handlers and
# refuses a body over SLIPWAY_MAX_REQUEST_BYTES before reading it (slipway/limits.py).
SLIPWAY_MAX_REQUEST_BYTES = env.int("SLIPWAY_MAX_REQUEST_BYTES", default=10 * 1024**2)
# Staged uploads nobody finished (a crashed process, a dropped connection) are swept once this old.
SLIPWAY_STAGING_MAX_AGE_S = env.int("SLIPWAY_STAGING_MAX_AGE_S", default=6 * 3600)
SLIPWAY_MAX_UPLOAD_BYTES = env.int("SLIPWAY_MAX_UPLOAD_BYTES", default=2 * 1024**3)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("SLIPWAY_MAX_FIELDS_BYTES", default=1024 * 1024)
SLIPWAY_MAX_EVAL_UNPACKED_BYTES = env.int("SLIPWAY_MAX_EVAL_UNPACKED_BYTES", default=2 * 1024**3)
SLIPWAY_MAX_METADATA_BYTES = env.int("SLIPWAY_MAX_METADATA_BYTES", default=64 * 1024)
ARTIFACT_DIR = Path(env.str("SLIPWAY_ARTIFACT_DIR", default=str(DATA_DIR / "artifacts"))).resolve()
# The artifact store (releases.storage): "fs" keeps objects in ARTIFACT_DIR; "s3" keeps them in an
# S3-compatible bucket (credentials: boto3's AWS_* variables), and ARTIFACT_DIR then only holds this
# machine's download cache and stage work folders.
SLIPWAY_STORE = env.str("SLIPWAY_STORE", default="fs")
SLIPWAY_S3_BUCKET = env.str("SLIPWAY_S3_BUCKET", default="")
SLIPWAY_S3_ENDPOINT_URL = env.str("SLIPWAY_S3_ENDPOINT_URL", default="")
SLIPWAY_S3_PREFIX = env.str("SLIPWAY_S3_PREFIX", default="")
SLIPWAY_S3_PART_BYTES = env.int("SLIPWAY_S3_PART_BYTES", default=64 * 1024**2)
SLIPWAY_S3_URL_SECONDS = env.int("SLIPWAY_S3_URL_SECONDS", default=3600)
SLIPWAY_CACHE_DIR = Path(env.str("SLIPWAY_CACHE_DIR", default=str(ARTIFACT_DIR / "cache"))).resolve()

# API tokens expire this many days after they are made unless told otherwise (createtoken --expires; 0: never).
SLIPWAY_TOKEN_LIFETIME_DAYS = env.int("SLIPWAY_TOKEN_LIFETIME_DAYS", default=90)
# /metrics and /metrics/targets ask for this bearer token (Prometheus' authorization.credentials); unset, it is
# generated into SLIPWAY_DATA_DIR/metrics_token on first start.
SLIPWAY_METRICS_TOKEN = env.str("SLIPWAY_METRICS_TOKEN", default="") or _installation_secret("metrics_token", 32)

# Serving: HAProxy fronts each environment on its Environment.proxy_port; instances listen on loopback.
SLIPWAY_PROXY_DIR = Path(env.str("SLIPWAY_PROXY_DIR", default=str(DATA_DIR / "proxy"))).resolve()
SLIPWAY_PROXY_HOST = env.str("SLIPWAY_PROXY_HOST", default="127.0.0.1")
# Models each environment can route at once (HAProxy backends declared ahead; each is given to a model at run time).
SLIPWAY_PROXY_BACKENDS = env.int("SLIPWAY_PROXY_BACKENDS", default=32)
# The first install's environments: staging on this port, production on the next.
SLIPWAY_FIRST_PROXY_PORT = env.int("SLIPWAY_FIRST_PROXY_PORT", default=18081)
SLIPWAY_SERVING_DIR = Path(env.str("SLIPWAY_SERVING_DIR", default=str(DATA_DIR / "serving"))).resolve()
SLIPWAY_BASE_IMAGE = env.str("SLIPWAY_BASE_IMAGE", default="python:3.11-slim")
SLIPWAY_CONTAINER_MEMORY = env.str("SLIPWAY_CONTAINER_MEMORY", default="1g")
SLIPWAY_CONTAINER_CPUS = env.float("SLIPWAY_CONTAINER_CPUS", default=1.0)
# Environments with target "kubernetes": the cluster (a kubeconfig path, or "in-cluster"), the namespace,
# the Gateway ("name" or "namespace/name") the routes attach to, and the registry repository that
# release images are pushed to (pods pull them by digest).
SLIPWAY_KUBECONFIG = env.str("SLIPWAY_KUBECONFIG", default="")
SLIPWAY_K8S_NAMESPACE = env.str("SLIPWAY_K8S_NAMESPACE", default="slipway")
SLIPWAY_K8S_GATEWAY = env.str("SLIPWAY_K8S_GATEWAY", default="slipway")
SLIPWAY_K8S_REPLICAS = env.int("SLIPWAY_K8S_REPLICAS", default=1)
SLIPWAY_K8S_IMAGE_REPOSITORY = env.str("SLIPWAY_K8S_IMAGE_REPOSITORY", default="")

# Celery's broker is Redis. REDIS_URL names a shared one (production, several machines); without it the
# embedded default uses a private redis-server of its own on a unix socket in the data folder, which
# `manage.py demo` starts, supervises and stops (shipping/embedded_redis.py). kombu's filesystem
# transport is not used: a reader can take a message file before its writer has finished it.
REDIS_URL = env.str("REDIS_URL", default="")
# The cache (rate limits, throttles) is shared by every web process through Redis when there is one;
# only the embedded default keeps it in its one process.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "slipway-cache"}}
    # Sessions are read from that shared cache (and written through to the database): no session query on
    # every page, and a logout deletes the one copy every web process reads. Without Redis each process
    # would keep its own copy, and a session logged out in one would live on in the others: the database.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
BROKER_DIR = DATA_DIR / "broker"
EMBEDDED_REDIS_SOCKET = BROKER_DIR / "redis.sock"
# What Slipway itself reads queue depths from (redis-py's URL), and what Celery connects to (kombu's).
BROKER_REDIS_URL = REDIS_URL or f"unix://{EMBEDDED_REDIS_SOCKET}"
CELERY_BROKER_URL = REDIS_URL or f"redis+socket://{EMBEDDED_REDIS_SOCKET}"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "cpu"
# Celery closes the database connection around every task unless this is set, so each stage would
# pay a new PostgreSQL connection (a new server process); workers/tasks.py closes it only when it is
# broken or older than CONN_MAX_AGE, as the web does after each request.
CELERY_DB_REUSE_MAX = 10_000
# Compression and evaluation: "auto" sends them to the gpu queue while a worker consuming it has announced
# a CUDA device and is not gone (fleet.presence), else to cpu; "cpu" or "gpu" always sends them there.
SLIPWAY_ACCELERATED_QUEUE = env.str("SLIPWAY_ACCELERATED_QUEUE", default="auto")
CELERY_TASK_SOFT_TIME_LIMIT = env.int("SLIPWAY_STAGE_SOFT_TIME_LIMIT", default=1800)
CELERY_TASK_TIME_LIMIT = env.int("SLIPWAY_STAGE_TIME_LIMIT", default=1900)
# A running stage's worker renews its heartbeat this often; the sweeper (every SLIPWAY_SWEEP_EVERY_S)
# takes a stage whose heartbeat is older than the timeout as lost (its worker died) and retries it,
# up to the attempts, and sends again a queued stage no worker took within SLIPWAY_STAGE_RESEND_AFTER_S
# (and the stop of a server that left service that no worker confirmed within it).
SLIPWAY_STAGE_HEARTBEAT_S = env.float("SLIPWAY_STAGE_HEARTBEAT_S", default=10.0)
SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S = env.float("SLIPWAY_STAGE_HEARTBEAT_TIMEOUT_S", default=60.0)
SLIPWAY_STAGE_RESEND_AFTER_S = env.float("SLIPWAY_STAGE_RESEND_AFTER_S", default=60.0)
SLIPWAY_STAGE_MAX_ATTEMPTS = env.int("SLIPWAY_STAGE_MAX_ATTEMPTS", default=3)
# A shadow run's server start that no worker carried out is sent again (after SLIPWAY_STAGE_RESEND_AFTER_S)
# until this many were sent; then the run ends, with that reason.
SLIPWAY_SHADOW_START_MAX_ATTEMPTS = env.int("SLIPWAY_SHADOW_START_MAX_ATTEMPTS", default=3)
_SWEEP_EVERY_S = env.float("SLIPWAY_SWEEP_EVERY_S", default=30.0)
CELERY_BEAT_SCHEDULE = {"sweep": {"task": "workers.tasks.sweep", "options": {"queue": "cpu"},
                                  "schedule": _SWEEP_EVERY_S}}
# Model servers that no record references (a worker died between starting one and recording it) are stopped
# once older than the stage time limit, by a deploy worker: on the machine where they run (workers/orphans.py).
# One a busy deploy worker did not take before the next is due is dropped.
CELERY_BEAT_SCHEDULE["orphans"] = {"task": "workers.tasks.reap_orphans", "schedule": _SWEEP_EVERY_S,
                                   "options": {"queue": "deploy", "expires": _SWEEP_EVERY_S}}
CELERY_BEAT_SCHEDULE["uploads"] = {"task": "workers.tasks.sweep_uploads", "options": {"queue": "cpu"},
                                   "schedule": env.float("SLIPWAY_STAGING_SWEEP_EVERY_S", default=600.0)}
# HAProxy and the local model servers in service are started again when they died.
CELERY_BEAT_SCHEDULE["keep_serving"] = {"task": "workers.tasks.keep_serving", "options": {"queue": "deploy"},
                                        "schedule": env.float("SLIPWAY_KEEP_SERVING_EVERY_S", default=15.0)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Workers announce themselves (fleet app) and mark themselves seen this often; the /workers/ page
# shows a worker as gone after three missed heartbeats.
SLIPWAY_WORKER_HEARTBEAT_S = env.float("SLIPWAY_WORKER_HEARTBEAT_S", default=15.0)
# Webhooks (webhooks/): a failed delivery is tried again after SLIPWAY_WEBHOOK_BACKOFF_S, then twice that,
# and so on, SLIPWAY_WEBHOOK_MAX_ATTEMPTS attempts in all; beat sends again any delivery whose message was lost.
SLIPWAY_WEBHOOK_MAX_ATTEMPTS = env.int("SLIPWAY_WEBHOOK_MAX_ATTEMPTS", default=8)
SLIPWAY_WEBHOOK_BACKOFF_S = env.float("SLIPWAY_WEBHOOK_BACKOFF_S", default=10.0)
# Webhooks reach public addresses only; these networks (CIDRs, e.g. 10.1.2.0/24) are let in for internal receivers.
SLIPWAY_WEBHOOK_ALLOWED_NETWORKS = env.list("SLIPWAY_WEBHOOK_ALLOWED_NETWORKS", default=[])
CELERY_BEAT_SCHEDULE["webhooks"] = {"task": "webhooks.tasks.resend_due", "schedule": 15.0,
                                    "options": {"queue": "cpu"}}
# Monitoring (monitoring/): predictions, abnormal outputs, input summaries and serving figures collected from
# every model server.
CELERY_BEAT_SCHEDULE["monitoring"] = {"task": "monitoring.tasks.collect", "options": {"queue": "deploy"},
                                      "schedule": env.float("SLIPWAY_MONITORING_COLLECT_EVERY_S", default=15.0)}
# Predictions, labels and samples older than this are deleted (hourly), so that the database stays bounded.
SLIPWAY_MONITORING_RETENTION_DAYS = env.float("SLIPWAY_MONITORING_RETENTION_DAYS", default=30.0)
CELERY_BEAT_SCHEDULE["forget"] = {"task": "monitoring.tasks.forget_old", "schedule": 3600.0,
                                  "options": {"queue": "cpu"}}
# Canaries (releases/canaries.py): each running canary is sampled, and judged when its window ends, this
# often; a check not taken within the interval expires (the next one replaces it).
SLIPWAY_CANARY_CHECK_EVERY_S = env.float("SLIPWAY_CANARY_CHECK_EVERY_S", default=2.0)
CELERY_BEAT_SCHEDULE["canaries"] = {"task": "workers.tasks.check_canaries", "schedule": SLIPWAY_CANARY_CHECK_EVERY_S,
                                    "options": {"queue": "deploy", "expires": SLIPWAY_CANARY_CHECK_EVERY_S}}
# Rollback drills (releases/drills.py): every model in staging with a warm release is rolled back and
# forward again this often, and the times recorded; 0 (the default) runs drills only on demand.
SLIPWAY_DRILL_STAGING_EVERY_S = env.float("SLIPWAY_DRILL_STAGING_EVERY_S", default=0.0)
if SLIPWAY_DRILL_STAGING_EVERY_S > 0:
    CELERY_BEAT_SCHEDULE["drills"] = {"task": "workers.tasks.drill_staging", "schedule": SLIPWAY_DRILL_STAGING_EVERY_S,
                                      "options": {"queue": "deploy", "expires": SLIPWAY_DRILL_STAGING_EVERY_S}}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "releases.api.auth.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["releases.api.permissions.ScopedAccess"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "releases.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "releases.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": "10/min"},
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Slipway API",
    "DESCRIPTION": "Post model builds from CI, read releases, approve and roll back.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our static files, never a CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ReleaseStatusEnum": "releases.models.pipeline.ReleaseStatus",
        "StageStatusEnum": "releases.models.pipeline.StageStatus",
        "DeploymentRoleEnum": "releases.models.deploy.Deployment.Role",
    },
}

# Behind TLS in production set SLIPWAY_HTTPS=true: secure cookies, HSTS, redirects to https.
HTTPS = env.bool("SLIPWAY_HTTPS", default=False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SLIPWAY_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if env.bool("SLIPWAY_BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Scripts and styles only from our own static files: no inline code, no CDN.
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
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("SLIPWAY_LOG_LEVEL", default="INFO")},
}
