"""Surge settings, all from the environment (django-environ).

PostgreSQL is the only database. With no configuration Surge runs embedded:
the PostgreSQL that ``make run`` starts under ``var/postgres`` (config/embedded_db.py)
and a file-based Celery broker under ``var/``. ``DATABASE_URL`` and
``CELERY_BROKER_URL`` select real servers, which production and the test suite
always use.
"""

import hashlib
import ipaddress
import os
import secrets
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config import embedded_db
from core import logs
from core.ids import PATH_PATTERN
from payments.workflow import STAGE_QUEUES

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

VAR_DIR = embedded_db.var_dir()
VAR_DIR.mkdir(parents=True, exist_ok=True)

# Counters and histograms from every process (the web server's, Celery) are summed at
# /metrics; must be set before prometheus_client is imported.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

# "production" refuses to start on embedded defaults (generated keys, the
# embedded database).
SURGE_ENV = env("SURGE_ENV", default="development")
PRODUCTION = SURGE_ENV == "production"


def _local_secret(name: str, nbytes: int = 32) -> str:
    """Read or create a per-checkout secret file (mode 0600) under var/."""
    path = VAR_DIR / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()


if PRODUCTION:
    SECRET_KEY = env("SECRET_KEY")
else:
    SECRET_KEY = env("SECRET_KEY", default=None) or _local_secret("secret_key")

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if not PRODUCTION else [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "core",
    "vault",
    "ledger",
    "gateways",
    "payments",
]

# The whole stack, for the admin (people in a browser). The API, /metrics and
# the schema get API_MIDDLEWARE instead: no sessions, CSRF, user or messages,
# which an API key on every request makes moot (core/handlers.py).
MIDDLEWARE = [
    "core.middleware.RequestMetricsMiddleware",
    "core.logs.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.LazyMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "payments.api.throttling.RateLimitHeadersMiddleware",
]
API_MIDDLEWARE = [
    "core.middleware.RequestMetricsMiddleware",
    "core.logs.RequestContextMiddleware",  # request_id on every log line
    "django.middleware.security.SecurityMiddleware",  # nosniff, HSTS, SSL redirect
    "whitenoise.middleware.WhiteNoiseMiddleware",  # /static/ (the docs' assets)
    "django.middleware.common.CommonMiddleware",  # Host check, Content-Length
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "payments.api.throttling.RateLimitHeadersMiddleware",  # RateLimit fields
]
BROWSER_PATHS = ["/admin"]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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


def _process_name(argv: list[str] = sys.argv) -> str:
    prog = Path(argv[0]).name if argv else ""
    if prog in ("granian", "gunicorn") or "runserver" in argv:
        return "surge-web"
    if prog == "celery":
        return "surge-beat" if "beat" in argv else "surge-worker"
    if prog == "manage.py" and len(argv) > 1:
        return f"surge-{argv[1]}"[:63]
    return f"surge-{prog}"[:63] if prog else "surge"


if env("DATABASE_URL", default=""):
    DATABASES = {"default": env.db("DATABASE_URL")}
elif PRODUCTION:
    raise ImproperlyConfigured("SURGE_ENV=production needs DATABASE_URL (PostgreSQL).")
else:
    DATABASES = {"default": embedded_db.database_settings(VAR_DIR)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    # Its triggers and constraint triggers hold the ledger's and the outbox's
    # invariants; a database without them would run a different program.
    raise ImproperlyConfigured(
        "DATABASE_URL must be a PostgreSQL URL (postgres://user@host:port/name); "
        f"Surge runs on PostgreSQL only, not {DATABASES['default']['ENGINE']}. "
        "Unset DATABASE_URL for the embedded PostgreSQL that `make run` starts."
    )
# Django turns psycopg's prepared statements off (for poolers in transaction
# mode). Only the statements asked for with prepare=True (the intake insert,
# half the database time of a request unprepared) are prepared: a threshold
# no query reaches. With PgBouncer, use session pooling or >= 1.21 with
# max_prepared_statements, or set DATABASE_PREPARE=false.
_pg_options = {"prepare_threshold": 2**31} if env.bool("DATABASE_PREPARE", True) else {}
# Which process a connection belongs to, in pg_stat_activity and the logs
# (surge-web, surge-worker, surge-run_relay, ...): where database time goes.
_pg_options["application_name"] = env("SURGE_PROCESS", default=_process_name())
if env.bool("DATABASE_POOL", default=False):
    # psycopg 3 pool inside each process; CONN_MAX_AGE must stay 0 with it.
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=16),
            "timeout": 10,
        },
        **_pg_options,
    }
else:
    DATABASES["default"]["OPTIONS"] = {**_pg_options}
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # A health check is a SELECT 1 round trip per request; off by default
    # (a stale connection fails one request, which the client retries with
    # its idempotency key). Production should use DATABASE_POOL instead.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool(
        "CONN_HEALTH_CHECKS", default=False
    )
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=None)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# Request bodies above this are refused with 413 before parsing (core/parsers.py).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("MAX_REQUEST_BYTES", default=2_621_440)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["payments.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.api.SingleRendererNegotiation",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["payments.api.throttling.MerchantRateThrottle"],
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Surge API",
    "DESCRIPTION": "Payments for bursts: idempotent intake, vault tokens, ledger.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Ids in paths are <id:...> (core/converters.py): say what they match.
    "PATH_CONVERTER_OVERRIDES": {
        "id": {"type": "string", "pattern": f"^{PATH_PATTERN}$"}
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "config.schema.add_error_codes",
    ],
}

# --- HTTPS, HSTS and cookies (manage.py check --deploy) -----------------------
# On in production, off elsewhere; each can be set from the environment.
# Behind a TLS-terminating proxy, SECURE_PROXY_SSL_HEADER names the header it
# sets ("X-Forwarded-Proto=https"); the proxy must strip it from clients.
# /health/ and /metrics stay plain HTTP: probes and Prometheus call them
# inside the network, not through the proxy.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=31_536_000 if PRODUCTION else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
# The admin's forms carry the CSRF token; no script of ours reads the cookie.
CSRF_COOKIE_HTTPONLY = env.bool("CSRF_COOKIE_HTTPONLY", default=PRODUCTION)
# An operator's admin session lasts a working day in production, not
# Django's two weeks.
SESSION_COOKIE_AGE = env.int(
    "SESSION_COOKIE_AGE", default=8 * 3600 if PRODUCTION else 14 * 24 * 3600
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``"X-Forwarded-Proto=https"`` -> ``("HTTP_X_FORWARDED_PROTO", "https")``."""
    if not value:
        return None
    name, sep, expected = value.partition("=")
    if not (sep and name.strip() and expected.strip()):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be Header-Name=value, "
            f"e.g. X-Forwarded-Proto=https; got {value!r}."
        )
    meta = name.strip().upper().replace("-", "_")
    if not meta.startswith("HTTP_"):
        meta = f"HTTP_{meta}"
    return meta, expected.strip()


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(env("SECURE_PROXY_SSL_HEADER", default=""))

# --- Metrics of processes without a web server (core/metrics_server.py) -------
# The Celery worker, beat and the relay serve their own counters (their
# PROMETHEUS_MULTIPROC_DIR, children included) on this port when it is set.
# One port per process, so leave it unset where processes share a host and a
# metrics folder (make run: the web's /metrics already sums them all).
SURGE_METRICS_PORT = env.int("SURGE_METRICS_PORT", default=None)
SURGE_METRICS_ADDR = env("SURGE_METRICS_ADDR", default="0.0.0.0")

# --- Celery -----------------------------------------------------------------
# The database is the source of truth; the broker is only a wake-up. Every task
# is idempotent, so late acks and redelivery on worker loss are safe.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for sub in ("out", "processed"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        # Exchange bindings (kombu makes the folder); its default is ./control,
        # in the checkout.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # How often an idle consumer looks for new message files (kombu's
        # default is 1 s): a stage a payment waits for, and a worker's shutdown.
        "polling_interval": 0.1,
    }
elif CELERY_BROKER_URL.startswith(("amqp://", "amqps://", "pyamqp://")):
    # RabbitMQ (docs/operations.md#rabbitmq): every queue a quorum queue
    # (replicated, durable, survives a node restart with its messages), and
    # each publish waits for the broker's confirm, so a send that returned is
    # in the queue. Quorum queues refuse global QoS: Celery sees the
    # x-queue-type argument and sets the prefetch per consumer instead
    # (worker_detect_quorum_queues, on by default). No task uses an ETA or
    # countdown, which quorum queues would need Celery's delayed delivery for.
    CELERY_TASK_QUEUES = [
        Queue(
            name,
            Exchange(name, type="direct"),
            routing_key=name,
            queue_arguments={"x-queue-type": "quorum"},
        )
        for name in dict.fromkeys(("default", *STAGE_QUEUES))
    ]
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacked message (worker SIGKILLed) is redelivered after this long;
        # the sweeper re-drives the payment sooner if needed.
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=300),
    }
CELERY_TASK_IGNORE_RESULT = True
# Celery's Django fixup closes every database connection before and after each
# task unless this is set: a new PostgreSQL backend per task (fork, auth, cold
# catalog caches), which at hundreds of small tasks a second costs the database
# more than the tasks' own queries (docs/performance.md). Connections are
# kept instead, and closed as Django does between requests: when broken or
# older than CONN_MAX_AGE (config/celery.py); this count is only a backstop.
CELERY_DB_REUSE_MAX = 1000
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_PREFETCH", default=4)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_SOFT_TIME_LIMIT", default=120)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TIME_LIMIT", default=150)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The stages' queues are declared with the workflow (payments/workflow.py)
# and passed with every send; the other tasks use the default queue.
CELERY_BEAT_SCHEDULE = {
    "sweep": {
        "task": "payments.sweep",
        "schedule": env.int("SURGE_SWEEP_EVERY_SECONDS", default=10),
    },
    "purge-idempotency-keys": {
        "task": "payments.purge_idempotency_keys",
        "schedule": 3600.0,
    },
    "purge-velocity-entries": {
        "task": "payments.purge_velocity_entries",
        "schedule": 3600.0,
    },
    "ensure-partitions": {
        "task": "payments.ensure_partitions",
        "schedule": 24 * 3600.0,
    },
    "deliver-webhooks": {
        "task": "payments.deliver_webhooks",
        "schedule": env.float("WEBHOOK_EVERY_SECONDS", default=1.0),
        "options": {"expires": 10},  # a backlog of ticks is dropped, not replayed
    },
}

# --- Redis (breaker state, caches) -------------------------------------------
REDIS_URL = env("REDIS_URL", default=None)

# --- Rate limits (payments/api/throttling.py; token buckets in Redis) ---------
# Without REDIS_URL (make run's default) there are no rate limits.
SURGE_RATE_LIMIT_ENABLED = env.bool("SURGE_RATE_LIMIT_ENABLED", default=True)
# Requests a second per API key, and the burst a full bucket allows.
SURGE_RATE_LIMIT_PER_SECOND = env.int("SURGE_RATE_LIMIT_PER_SECOND", default=500)
SURGE_RATE_LIMIT_BURST = env.int("SURGE_RATE_LIMIT_BURST", default=1000)
# Payments a merchant may create a minute and an hour (a batch counts each).
SURGE_PAYMENTS_PER_MINUTE = env.int("SURGE_PAYMENTS_PER_MINUTE", default=60_000)
SURGE_PAYMENTS_PER_HOUR = env.int("SURGE_PAYMENTS_PER_HOUR", default=1_000_000)
# Redis down: allow (false, the default: availability first) or refuse (503).
SURGE_RATE_LIMIT_FAIL_CLOSED = env.bool("SURGE_RATE_LIMIT_FAIL_CLOSED", default=False)
# How long a request waits for Redis's answer before it is decided without it.
SURGE_RATE_LIMIT_TIMEOUT_SECONDS = env.float(
    "SURGE_RATE_LIMIT_TIMEOUT_SECONDS", default=0.1
)
# Requests a web process may take from Redis at once for a busy key, spent
# without a round trip for up to a second; only from the upper half of a
# bucket of 200 or more (core/ratelimit.py). 0: every request asks Redis.
SURGE_RATE_LIMIT_LEASE = env.int("SURGE_RATE_LIMIT_LEASE", default=16)

# --- Vault ------------------------------------------------------------------
# VAULT_KEYS="k2:<base64 32 bytes>,k1:<base64>" - the first seals, all open.
# VAULT_FINGERPRINT_KEY="<base64 32 bytes>" - HMAC key for card fingerprints.
VAULT_KEYS = env("VAULT_KEYS", default=None)
VAULT_FINGERPRINT_KEY = env("VAULT_FINGERPRINT_KEY", default=None)
VAULT_KEY_FILE = VAR_DIR / "vault_keys"
if PRODUCTION and not (VAULT_KEYS and VAULT_FINGERPRINT_KEY):
    raise RuntimeError(
        "SURGE_ENV=production needs VAULT_KEYS and VAULT_FINGERPRINT_KEY."
    )

# --- Payments ---------------------------------------------------------------
SURGE_MAX_AMOUNT = env.int("SURGE_MAX_AMOUNT", default=100_000_000)  # minor units
SURGE_IDEMPOTENCY_TTL_SECONDS = env.int("SURGE_IDEMPOTENCY_TTL", default=24 * 3600)
# HMAC key under which Idempotency-Keys are stored (as digests). Changing it
# forgets the keys of the last SURGE_IDEMPOTENCY_TTL: retries would be new
# payments. Derived from SECRET_KEY unless set.
IDEMPOTENCY_KEY_SECRET = env("IDEMPOTENCY_KEY_SECRET", default=None) or (
    hashlib.sha256(f"surge.idempotency-key:{SECRET_KEY}".encode()).hexdigest()
)
SURGE_API_KEY_CACHE_SECONDS = env.int("SURGE_API_KEY_CACHE_SECONDS", default=30)
# Payments per Celery task (the relay and sweeper chunk ids by this).
SURGE_TASK_BATCH_SIZE = env.int("SURGE_TASK_BATCH_SIZE", default=200)
# A non-terminal payment untouched this long is re-driven by the sweeper.
SURGE_SWEEP_AFTER_SECONDS = env.int("SURGE_SWEEP_AFTER_SECONDS", default=60)
# A payment whose gateway outcome is still unknown (``processing``) this long
# after it was accepted opens a dead letter (stage ``resolve``); inquiries go on.
SURGE_UNKNOWN_ESCALATE_AFTER = env.int("SURGE_UNKNOWN_ESCALATE_AFTER", default=900)
# --- Risk (payments/services/risk.py; the enrich stage) ------------------------
# A merchant's velocity rule without a window of its own counts over this many
# seconds. Velocity rules are off unless a merchant turns them on.
SURGE_RISK_VELOCITY_WINDOW_SECONDS = env.int(
    "SURGE_RISK_VELOCITY_WINDOW_SECONDS", default=3600
)
# The longest window a merchant may set; velocity entries older are purged.
SURGE_RISK_MAX_WINDOW_SECONDS = env.int(
    "SURGE_RISK_MAX_WINDOW_SECONDS", default=30 * 24 * 3600
)
# --- Retention (payments/services/partitions.py, archive.py) -----------------
# Events and webhook deliveries live in monthly partitions; `partitions` (beat,
# daily) keeps this many months ready after the current one.
SURGE_PARTITION_MONTHS_AHEAD = env.int("SURGE_PARTITION_MONTHS_AHEAD", default=3)
# Where `archive` writes old months (gzip'd CSV) before it drops them.
SURGE_ARCHIVE_DIR = Path(env("SURGE_ARCHIVE_DIR", default=str(VAR_DIR / "archive")))
# Seconds `archive` waits for the brief exclusive lock a partition's detach
# takes on its table before it gives up (nothing dropped; run it again).
SURGE_ARCHIVE_LOCK_TIMEOUT = env.int("SURGE_ARCHIVE_LOCK_TIMEOUT", default=10)
# Celery processes hand freed heap back to the OS at most this often (core/memory.py;
# 0: never).
SURGE_MALLOC_TRIM_SECONDS = env.float("SURGE_MALLOC_TRIM_SECONDS", default=5.0)

# --- Webhooks to merchants (payments/services/webhooks/) ----------------------
# Events newer than (oldest open writing transaction, or now) minus this margin
# wait for the next dispatch: it covers clock skew between app servers and the
# database and the gap between making an event id and inserting it.
WEBHOOK_HORIZON_MARGIN_SECONDS = env.float(
    "WEBHOOK_HORIZON_MARGIN_SECONDS", default=2.0
)
# Seconds to wait after attempt 1, 2, ...; one more attempt than entries, then
# the delivery fails and a dead letter is opened. Each delay gets +-20% jitter.
WEBHOOK_RETRY_SCHEDULE = [
    int(s)
    for s in env.list(
        "WEBHOOK_RETRY_SCHEDULE",
        default=["5", "300", "1800", "7200", "18000", "36000", "36000"],
    )
]
WEBHOOK_CONNECT_TIMEOUT = env.float("WEBHOOK_CONNECT_TIMEOUT", default=3.0)
WEBHOOK_READ_TIMEOUT = env.float("WEBHOOK_READ_TIMEOUT", default=10.0)
WEBHOOK_CONCURRENCY = env.int("WEBHOOK_CONCURRENCY", default=16)  # per task run
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=100)  # claims per round
# A claimed delivery whose worker died is due again after this long.
WEBHOOK_LEASE_SECONDS = env.int("WEBHOOK_LEASE_SECONDS", default=300)
WEBHOOK_MAX_ENDPOINTS = env.int("WEBHOOK_MAX_ENDPOINTS", default=16)  # per merchant
# Endpoint URLs must be https unless DEBUG or this is set (tests, local dev).
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
# The SSRF guard refuses loopback, private, link-local, multicast, reserved and
# metadata addresses; CIDRs listed here are allowed anyway (e.g. 127.0.0.0/8
# for tests and local development). Metadata addresses stay refused.
# A malformed CIDR stops the start here rather than at the first delivery.
WEBHOOK_ALLOWED_NETWORKS = [
    str(ipaddress.ip_network(cidr.strip(), strict=False))
    for cidr in env.list("WEBHOOK_ALLOWED_NETWORKS", default=[])
    if cidr.strip()
]
# An endpoint whose attempts have all failed for this many seconds is disabled
# and its pending deliveries paused (0: never).
WEBHOOK_DISABLE_AFTER = env.int("WEBHOOK_DISABLE_AFTER", default=3 * 86400)

# JSON a line (core/logs.py); LOG_FORMAT=console for a person at a terminal.
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
logs.configure(LOG_LEVEL)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_pan": {"()": "core.pan.RedactPANFilter"}},
    "formatters": {"structured": logs.formatter(env("LOG_FORMAT", default="json"))},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["redact_pan"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # httpx logs a line per gateway request: noise at thousands per second.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
