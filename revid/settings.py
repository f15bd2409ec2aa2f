"""Settings for the Remove Background API.

Every knob is an environment variable with a safe default (listed in the
README). The helpers below fail loudly on a malformed value instead of
silently falling back, as healthchecks.io's settings do. What no variable
changes (apps, middleware, DRF, logging's shape) is in revid/framework.py,
and django-q2's clusters are built in revid/queue_clusters.py.
"""

import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from imaging import engines as model_engines
from revid.env import env_bool, env_int, env_list, env_networks, env_str, s3_storage  # noqa: F401
from revid.framework import (  # noqa: F401 (Django reads them from here)
    API_KEY_CUSTOM_HEADER,
    AUTH_PASSWORD_VALIDATORS,
    FILE_UPLOAD_HANDLERS,
    INSTALLED_APPS,
    MIDDLEWARE,
    REST_FRAMEWORK,
    SPECTACULAR_SETTINGS,
    TEMPLATES,
    logging_config,
)
from revid.queue_clusters import (  # noqa: F401
    HOUSEKEEPING_CLUSTER,
    HOUSEKEEPING_RUN_SECONDS,
    WEBHOOK_CLUSTER,
    queue_clusters,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# A development checkout keeps its SECRET_KEY and DJANGO_DEBUG=1 in a local,
# git-ignored .env that `make setup` (and so `make run` and `make test`)
# writes once, so `.venv/bin/python manage.py ...` works in a plain shell.
# Real environment variables always win over the file: production sets them
# (and has no .env), pytest-env sets the tests' values. ENV_FILE="" reads none.
ENV_FILE = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if ENV_FILE:
    load_dotenv(ENV_FILE, override=False)


DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DJANGO_DEBUG is off (in development, "
            "`make setup` writes one into .env for you)."
        )
    SECRET_KEY = "insecure-development-only-key-do-not-use-in-production"
# Rotation: the new key in SECRET_KEY, the old one(s) here until every
# session, signed link and queued task made with them has run out. Django
# checks them on its own; django-q2's task signatures are checked against
# them too (revid/queue_signing.py), so no queued task is dropped.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", "")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- Transport security -------------------------------------------------------
# Headers that are right on plain http as well are always on. The
# https-only ones (redirect, HSTS, secure cookies) follow SECURE_HTTPS, set
# by a deployment that is served over TLS, so `make run` keeps working on
# http://127.0.0.1:8000.
SECURE_HTTPS = env_bool("SECURE_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", SECURE_HTTPS)
# Load balancers and orchestrators probe each machine over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", SECURE_HTTPS)
# Behind a TLS-terminating proxy, trust its X-Forwarded-Proto (only then:
# a client could otherwise claim https itself). The proxy must set the
# header on every request, replacing whatever the client sent: Django then
# sees https, so absolute URLs (image_url, Stripe's return URLs, links in
# emails) are https and the cookies are sent only over TLS.
if env_bool("SECURE_PROXY_SSL_HEADER", SECURE_HTTPS):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

# Where clients reach the service behind a proxy (https://api.example.com):
# set, it is the base of every absolute URL it makes, API results, webhook
# payloads and emails alike (revid/middleware.py). Unset, a request's URLs
# follow its Host, and URLs made outside one use SITE_URL (below).
PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL").rstrip("/")
if PUBLIC_BASE_URL:
    _public = urlsplit(PUBLIC_BASE_URL)
    if _public.scheme not in ("http", "https") or not _public.hostname or _public.path:
        raise ImproperlyConfigured(
            "PUBLIC_BASE_URL must be a scheme and a host, such as https://api.example.com "
            f"or http://127.0.0.1:8010 (no path), got {PUBLIC_BASE_URL!r}"
        )
    ALLOWED_HOSTS.append(f"[{_public.hostname}]" if ":" in _public.hostname else _public.hostname)

# Everything the embedded default writes (database, uploads, outputs,
# model weights) lives under one folder that is easy to back up or wipe.
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

ROOT_URLCONF = "revid.urls"

WSGI_APPLICATION = "revid.wsgi.application"

# --- Database -------------------------------------------------------------
# SQLite by default (embedded); DATABASE_URL=postgres://... for production.
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
# Seconds a web thread or worker keeps its database connection between
# requests (0: a new connection per request). Opening a PostgreSQL
# connection cost each request 2-5 ms here; a kept one is checked before
# reuse, so a restarted database costs one failed check, not an error.
DB_CONN_MAX_AGE = env_int("DB_CONN_MAX_AGE", 60, minimum=0)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True
    )
}
# DATABASE_URL goes through PgBouncer (or another pooler) in transaction
# mode: a session's state does not outlive its transaction there, so
# server-side cursors (QuerySet.iterator()) and LISTEN cannot work through
# it. The wait listener then needs WAIT_DATABASE_URL (a direct connection),
# or Redis / the poll (see WAIT_BACKEND below).
DB_TRANSACTION_POOLER = env_bool("DB_TRANSACTION_POOLER", False)
if DB_TRANSACTION_POOLER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # The web server and the worker share one file: wait for the write
        # lock instead of failing, take it at BEGIN (so a read never has to
        # be upgraded to a write mid-transaction, which SQLite cannot do
        # safely), and let readers run beside the writer (WAL).
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not :memory:, so a worker process started by a test can
    # open the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# --- Sign-up (django-allauth, email + password, no social logins) ----------
# On by default in development (make run), off by default in production:
# a deployment without self-service customers stays as it was.
SIGNUP_ENABLED = env_bool("SIGNUP_ENABLED", DEBUG)
# Credits granted (through the ledger) to each account made by a sign-up,
# once its email address is verified.
SIGNUP_FREE_CREDITS = env_int("SIGNUP_FREE_CREDITS", 0, minimum=0)
# Sign-up attempts per client address (an IPv6 /64), in the
# "N/second|minute|hour|day" form; empty turns it off. Counted in the
# database, like REMOVAL_RATE_LIMIT, so every web process shares the count.
SIGNUP_RATE_LIMIT = env_str("SIGNUP_RATE_LIMIT", "5/hour").strip()
# How many proxies in front of the web processes add themselves to
# X-Forwarded-For: the client address (sign-up limit, allauth's own limits)
# is the one the outermost of them saw. 0 (the default) ignores the header,
# which anyone can send; behind a proxy every client would then count as it.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
AUTHENTICATION_BACKENDS = [
    # Usernames, as before (admin-made users), then email or username for
    # users who signed up.
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# A sign-up answers "check your email" whether or not the address is known
# (its owner is emailed instead), so it cannot tell who is registered: with
# unique addresses allauth does that only when verification is mandatory.
# The link logs the new user in. Logging in with the password (our login
# page) still works before the address is verified; creating the first API
# key does not (accounts.selectors.email_verification_pending), and the
# free credits come with the verification (accounts.services).
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_PREVENT_ENUMERATION = True
# allauth counts sign-ups in each process's cache; ours are counted in the
# database instead (SIGNUP_RATE_LIMIT, doors.dashboard.signup).
ACCOUNT_RATE_LIMITS = {"signup": None}
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Remove Background] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if SECURE_HTTPS else "http"
ACCOUNT_SIGNUP_REDIRECT_URL = "/dashboard/"
ACCOUNT_LOGOUT_REDIRECT_URL = LOGOUT_REDIRECT_URL

# --- Static and uploaded files ------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles"))).resolve()
# The web page's own CSS and script (plain files, no front-end build).
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
# Never served directly: outputs go through /output/<filename>, which checks
# that the file is a live result of this service.
MEDIA_URL = "/media/"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# How long a presigned download URL stays valid, when downloads redirect
# (and of any URL the S3 storage makes).
OUTPUT_URL_EXPIRE_SECONDS = env_int("OUTPUT_URL_EXPIRE_SECONDS", 300, minimum=1)


if (_s3_storage := s3_storage(os.environ)) is not None:
    STORAGES["default"] = _s3_storage
# With S3 storage, /output/<file> answers 302 to a short-lived presigned
# URL by default, so the bytes go from the bucket to the client and skip
# the web server. OUTPUT_REDIRECT_TO_STORAGE=0 streams them through the web
# server instead (for buckets clients cannot reach), chunk by chunk, never
# the whole object in memory. Local files are always streamed.
OUTPUT_REDIRECT_TO_STORAGE = env_bool("OUTPUT_REDIRECT_TO_STORAGE", _s3_storage is not None)
if OUTPUT_REDIRECT_TO_STORAGE and _s3_storage is None:
    raise ImproperlyConfigured(
        "OUTPUT_REDIRECT_TO_STORAGE needs S3 storage (set AWS_STORAGE_BUCKET_NAME)."
    )
if DEBUG or "pytest" in sys.modules:
    # No collectstatic needed in development and tests.
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    WHITENOISE_USE_FINDERS = True

# --- The product's rules --------------------------------------------------
REMOVAL_PRICE_CREDITS = env_int("REMOVAL_PRICE_CREDITS", 25, minimum=0)
REMOVAL_DEFAULT_MODEL = env_str("REMOVAL_DEFAULT_MODEL", "u2net")
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000, minimum=1)
# Longest side, width or height. A 1x50,000,000 image is within the pixel
# limit but the pipeline cannot finish it (the mask resize needs more than
# Pillow allows); 65,535 (also a JPEG's own limit) is the most it can do,
# and what the worker itself enforces, so the setting may only lower it.
MAX_IMAGE_SIDE = env_int("MAX_IMAGE_SIDE", 65_535, minimum=1)
if MAX_IMAGE_SIDE > 65_535:
    raise ImproperlyConfigured(f"MAX_IMAGE_SIDE must be <= 65535, got {MAX_IMAGE_SIDE}")
REMOVAL_JOB_TIMEOUT = env_int("REMOVAL_JOB_TIMEOUT", 60, minimum=1)
# How long past REMOVAL_JOB_TIMEOUT a job may sit in "processing" before the
# reaper (a django-q2 schedule, every minute) decides its worker died and
# fails and refunds it, or a redelivered task claims it again.
REMOVAL_STALE_GRACE = env_int("REMOVAL_STALE_GRACE", 30, minimum=1)
# Per-key limit on submissions, in DRF's "N/second|minute|hour|day" form;
# empty turns it off. Checked before anything is read or charged.
REMOVAL_RATE_LIMIT = env_str("REMOVAL_RATE_LIMIT", "60/minute").strip()
for _name, _rate in (
    ("REMOVAL_RATE_LIMIT", REMOVAL_RATE_LIMIT),
    ("SIGNUP_RATE_LIMIT", SIGNUP_RATE_LIMIT),
):
    if _rate and not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", _rate):
        raise ImproperlyConfigured(f"{_name} must look like 60/minute (or be empty), got {_rate!r}")
# A job no worker has started after this long is failed and refunded. The
# Redis broker has no acknowledgements: tasks a killed qcluster had already
# taken off the queue are gone, and this is what finally answers them.
REMOVAL_QUEUE_TIMEOUT = env_int("REMOVAL_QUEUE_TIMEOUT", 600, minimum=1)
OUTPUT_TTL_HOURS = env_int("OUTPUT_TTL_HOURS", 24, minimum=1)
# The remove.bg door answers when the job ends: a job no worker has started
# after this long is failed and refunded, and the client told so.
REMOVEBG_QUEUE_WAIT_SECONDS = env_int("REMOVEBG_QUEUE_WAIT_SECONDS", 60, minimum=1)
DEMO_ACCOUNT_CREDITS = env_int("DEMO_ACCOUNT_CREDITS", 1000, minimum=0)
# An account's users get one email when its balance falls under this many
# requests' worth of credits (0 turns the email off).
LOW_BALANCE_REQUESTS = env_int("LOW_BALANCE_REQUESTS", 20, minimum=0)

# --- Email ------------------------------------------------------------------
# SMTP when EMAIL_HOST is set; otherwise emails are written to the console
# (the process's output), which is what `make run` shows. EMAIL_BACKEND
# overrides both (the browser tests read a file-based outbox). Tests use
# Django's in-memory outbox.
EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
# Only for EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend.
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Remove Background <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Payments (Stripe Checkout) ---------------------------------------------
# Buying credit packs is on only when both are set; otherwise the pricing
# page asks customers to contact the administrator.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
# Another Stripe-compatible API (a local test server); empty for Stripe's own.
STRIPE_API_BASE = env_str("STRIPE_API_BASE")

# Model weights: a flat folder of <model>.onnx that rembg reads (U2NET_HOME).
U2NET_HOME = Path(env_str("U2NET_HOME", str(DATA_DIR / "models"))).resolve()
os.environ["U2NET_HOME"] = str(U2NET_HOME)
MODEL_DOWNLOAD_TIMEOUT = env_int("MODEL_DOWNLOAD_TIMEOUT", 20, minimum=1)
# ONNX Runtime threads per session; 0 lets ONNX Runtime use one per
# physical core. With Q_WORKERS=1 that measured fastest per image on 2
# cores; Q_WORKERS=2 with 1 thread each gives more images per minute
# but slower small images (docs/benchmarks.md).
ORT_INTRA_OP_THREADS = env_int("ORT_INTRA_OP_THREADS", 0, minimum=0)
# ONNX Runtime's threads busy-wait between operators (its default). In the
# worker, turning that off made u2net 1.3-1.6x slower per image; turn it off
# only when a worker's threads outnumber the cores it may use.
ORT_ALLOW_SPINNING = env_bool("ORT_ALLOW_SPINNING", True)
# What runs the models (imaging/engines.py): OpenVINO in fp32 (rembg's
# masks, 9-14 % faster per run here), OpenVINO in bf16 (about 2x faster on
# CPUs with AVX-512 BF16/AMX, but the masks drift: docs/benchmarks.md) or
# ONNX Runtime (rembg's own engine).
MODEL_ENGINE = env_str("MODEL_ENGINE", model_engines.DEFAULT_ENGINE)
if MODEL_ENGINE not in model_engines.ENGINES:
    raise ImproperlyConfigured(
        f"MODEL_ENGINE must be {' or '.join(model_engines.ENGINES)}, got {MODEL_ENGINE!r}"
    )
# Models loaded (and run once) when each worker process starts, so the
# first job is not slow; empty to load lazily on first use.
WARM_MODELS = env_list("WARM_MODELS", "u2net")

# Django must not buffer an upload beyond our own limit in memory; larger
# bodies are refused by the upload handler while they are read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
CSRF_FAILURE_VIEW = "doors.uploads.csrf_failure"


# --- Outbound requests ---------------------------------------------------------
# Every URL the service fetches or calls for a customer (image URLs, webhook
# deliveries) goes through outbound/fetcher.py, which refuses loopback,
# private, link-local (cloud metadata), multicast and reserved addresses.
# Networks listed here are let through anyway: an operator's own image
# server on 10.1.2.0/24, or 127.0.0.1/32 for the tests' servers.
OUTBOUND_ALLOWED_NETWORKS = env_networks("OUTBOUND_ALLOWED_NETWORKS")
# Bounds connecting, each read and the whole request (redirects included).
OUTBOUND_TIMEOUT_SECONDS = env_int("OUTBOUND_TIMEOUT_SECONDS", 10, minimum=1)

# --- Queue (django-q2) ------------------------------------------------------
Q_WORKERS = env_int("Q_WORKERS", 1, minimum=1)
# How often the ORM broker looks for new jobs when idle (Redis does not
# poll). Each look is one indexed query; 50 ms keeps queue latency small
# next to a 0.3 MP job.
Q_POLL_MS = env_int("Q_POLL_MS", 50, minimum=1)
# Tasks each removal cluster holds beyond those its workers are running.
Q_QUEUE_LIMIT = env_int("Q_QUEUE_LIMIT", Q_WORKERS, minimum=1)
REDIS_URL = env_str("REDIS_URL")
# Without Redis, web and worker on one machine ring each other's doorbells
# (Unix sockets in LOCAL_WAKE_DIR, revid/doorbell.py) instead of waiting
# for the next poll: the worker's queue reader when a job is enqueued
# (revid/broker.py), the web's waiting requests when a job ends
# (removal/waiting.py). Q_POLL_MS and WAIT_POLL_MS stay as the fallback.
LOCAL_WAKE = env_bool("LOCAL_WAKE", True)
LOCAL_WAKE_DIR = Path(env_str("LOCAL_WAKE_DIR", str(DATA_DIR / "wake"))).resolve()
# On SQLite (every process on this machine, so every enqueue and job end
# rings) the polls only catch a lost ring: they look this often instead
# (revid/doorbell.py). On PostgreSQL a web or worker may be on another
# machine, out of the bells' reach, and Q_POLL_MS and WAIT_POLL_MS stay.
LOCAL_WAKE_FALLBACK_MS = env_int("LOCAL_WAKE_FALLBACK_MS", 1000, minimum=1)
QUEUE_WAKE_DIR = LOCAL_WAKE_DIR / "queue"
WAIT_WAKE_DIR = LOCAL_WAKE_DIR / "wait"

# --- Waiting -----------------------------------------------------------------
# How a web request learns that a job ended (removal/waiting.py, used by
# GET /api/get/<id>?wait=N and the web page): "auto" picks Redis pub/sub
# when REDIS_URL is set, PostgreSQL LISTEN/NOTIFY on PostgreSQL, else a poll.
WAIT_BACKEND = env_str("WAIT_BACKEND", "auto").strip().lower()
if WAIT_BACKEND not in ("auto", "redis", "postgres", "poll"):
    raise ImproperlyConfigured(
        f"WAIT_BACKEND must be auto, redis, postgres or poll, got {WAIT_BACKEND!r}"
    )
if WAIT_BACKEND == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("WAIT_BACKEND=redis needs REDIS_URL")
if WAIT_BACKEND == "postgres" and "postgresql" not in DATABASES["default"]["ENGINE"]:
    raise ImproperlyConfigured("WAIT_BACKEND=postgres needs a PostgreSQL DATABASE_URL")
# The LISTEN connection of the postgres backend, when it must not be
# DATABASE_URL's: a direct connection to the same database beside a
# transaction pooler. Empty: DATABASE_URL's own parameters.
WAIT_DATABASE_URL = env_str("WAIT_DATABASE_URL")
if WAIT_DATABASE_URL and "postgres" not in dj_database_url.parse(WAIT_DATABASE_URL)["ENGINE"]:
    raise ImproperlyConfigured("WAIT_DATABASE_URL must be a postgres:// URL")
if DB_TRANSACTION_POOLER and WAIT_BACKEND == "postgres" and not WAIT_DATABASE_URL:
    raise ImproperlyConfigured(
        "WAIT_BACKEND=postgres cannot LISTEN through a transaction pooler "
        "(DB_TRANSACTION_POOLER=1): set WAIT_DATABASE_URL to a direct connection, "
        "or use WAIT_BACKEND=redis or poll"
    )
# The poll backend's interval: one query per web process (for all of its
# waiting requests together), only while some request waits.
WAIT_POLL_MS = env_int("WAIT_POLL_MS", 25, minimum=1)
# The last net: a listening waiter re-reads its job this often, in case it
# ended without an announcement (or the announcement was lost). Tests set it
# far beyond their waits, so that only the announcement can end them.
WAIT_RECHECK_SECONDS = env_int("WAIT_RECHECK_SECONDS", 5, minimum=1)
# The longest ?wait= a client may ask for, in seconds.
WAIT_MAX_SECONDS = env_int("WAIT_MAX_SECONDS", 30, minimum=1)
# The Redis channel / PostgreSQL NOTIFY channel jobs are announced on.
WAIT_CHANNEL = env_str("WAIT_CHANNEL", "revid_job_finished")
# Requests that may wait at once (?wait=, /v1.0/removebg) per API key (on
# the web page: per account) and per client address, counted in Redis when
# REDIS_URL is set (every web process), else per process
# (removal/wait_limits.py). Past it a wait answers at once (remove.bg: 429).
# 0: no limit.
WAIT_MAX_PER_KEY = env_int("WAIT_MAX_PER_KEY", 100, minimum=0)
WAIT_MAX_PER_ADDRESS = env_int("WAIT_MAX_PER_ADDRESS", 200, minimum=0)

# --- Web server ----------------------------------------------------------------
# The ASGI server (revid/asgi.py, revid/server.py) runs one event loop per
# process; waiting costs no thread. Sync work (sync views: pages, admin,
# quick API calls; the body parse, decode and charge of a submission) runs
# on threads, at most this many at once per process; the rest queue on the
# loop (revid/serving.py).
WEB_THREADS = env_int("WEB_THREADS", 16, minimum=1)

# --- Webhooks ---------------------------------------------------------------
# Deliveries run on their own django-q2 cluster (revid/queue_clusters.py).
WEBHOOK_WORKERS = env_int("WEBHOOK_WORKERS", 2, minimum=1)
# Bounded time per attempt (connect + answer), in seconds.
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6, minimum=1)
# Seconds before retry 1, 2, ... (the last repeats); each gets up to 20 %
# jitter. The default spreads 6 attempts over about an hour.
try:
    WEBHOOK_RETRY_DELAYS = [
        int(item) for item in env_list("WEBHOOK_RETRY_DELAYS", "10,60,300,900,1800")
    ]
except ValueError:
    raise ImproperlyConfigured(
        "WEBHOOK_RETRY_DELAYS must be comma-separated whole seconds, e.g. 10,60,300"
    ) from None
if not WEBHOOK_RETRY_DELAYS or min(WEBHOOK_RETRY_DELAYS) < 0:
    raise ImproperlyConfigured("WEBHOOK_RETRY_DELAYS needs at least one delay, none negative")
# Recovery (webhooks/services.py): an attempt whose worker was killed is
# due again this long after its time limit ran out; the sweep (run by the
# webhook cluster's scheduler, which looks every 30 s) leaves events and
# ended jobs younger than WEBHOOK_SWEEP_GRACE_SECONDS to the task queued
# for them. Short values only make duplicate attempts more likely.
WEBHOOK_CLAIM_GRACE_SECONDS = env_int("WEBHOOK_CLAIM_GRACE_SECONDS", 60, minimum=1)
WEBHOOK_SWEEP_GRACE_SECONDS = env_int("WEBHOOK_SWEEP_GRACE_SECONDS", 30, minimum=1)
# Absolute URLs made outside a request (webhook payloads, emails): the
# public address when set, else SITE_URL (`make run` sets it from its PORT).
SITE_URL = PUBLIC_BASE_URL or env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
Q_CLUSTER = queue_clusters(
    workers=Q_WORKERS,
    queue_limit=Q_QUEUE_LIMIT,
    poll_ms=Q_POLL_MS,
    job_timeout=REMOVAL_JOB_TIMEOUT,
    stale_grace=REMOVAL_STALE_GRACE,
    redis_url=REDIS_URL,
    local_wake=LOCAL_WAKE,
    webhook_workers=WEBHOOK_WORKERS,
    webhook_timeout=WEBHOOK_TIMEOUT_SECONDS,
)
if env_str("Q_CLUSTER_NAME") in (WEBHOOK_CLUSTER, HOUSEKEEPING_CLUSTER):
    # These workers never run a model: do not load one in each.
    WARM_MODELS = []

# How long a stopping worker (revid/run_worker.py, on SIGTERM) waits for
# its running jobs before it kills them: django-q2's hard limit on one task
# (the removal job's or a webhook attempt's, whichever is longer) and a
# margin to store the result. Tasks taken but not started go back to the
# queue at once. A supervisor must allow at least this long (systemd's
# TimeoutStopSec, a container's stop timeout); the job of a worker killed
# anyway is failed and refunded by the reaper.
WORKER_STOP_GRACE_SECONDS = env_int(
    "WORKER_STOP_GRACE_SECONDS",
    max(Q_CLUSTER["timeout"], Q_CLUSTER["ALT_CLUSTERS"][WEBHOOK_CLUSTER]["timeout"]) + 15,
    minimum=1,
)

# --- Web server and probes ----------------------------------------------------
# The longest a request may hold a web thread: POST /v1.0/removebg fetches
# an image URL, waits for a worker to start the job, then for the job (and
# the reaper's grace); ?wait= holds at most WAIT_MAX_SECONDS.
LONGEST_REQUEST_SECONDS = max(
    WAIT_MAX_SECONDS,
    OUTBOUND_TIMEOUT_SECONDS
    + REMOVEBG_QUEUE_WAIT_SECONDS
    + REMOVAL_JOB_TIMEOUT
    + REMOVAL_STALE_GRACE,
)
# On SIGTERM gunicorn stops accepting at once (the load balancer's probe
# fails from then on) and gives the requests in hand this long to finish
# (revid/gunicorn_conf.py). Shorter would cut waiting clients off.
WEB_GRACEFUL_TIMEOUT = env_int("WEB_GRACEFUL_TIMEOUT", LONGEST_REQUEST_SECONDS + 10, minimum=1)
if WEB_GRACEFUL_TIMEOUT < LONGEST_REQUEST_SECONDS:
    raise ImproperlyConfigured(
        f"WEB_GRACEFUL_TIMEOUT ({WEB_GRACEFUL_TIMEOUT}) must cover the longest request, "
        f"{LONGEST_REQUEST_SECONDS} s (REMOVEBG_QUEUE_WAIT_SECONDS + REMOVAL_JOB_TIMEOUT + "
        "REMOVAL_STALE_GRACE + OUTBOUND_TIMEOUT_SECONDS, or WAIT_MAX_SECONDS)"
    )
# /readyz reports a shared dependency (database, broker, bucket) as failing
# only once it has failed for this long without a success: a blip of a
# service every web machine shares must not take all of them out of the
# load balancer at once. 0: fail at the first error.
READYZ_SHARED_GRACE_SECONDS = env_int("READYZ_SHARED_GRACE_SECONDS", 30, minimum=0)

# The rate limit's counters. One process (make run) can keep them in
# memory; several web processes must share them, in Redis.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Error reporting (optional) ---------------------------------------------
# Unhandled errors of web requests and worker tasks go to Sentry (or a
# compatible service) when SENTRY_DSN is set; nothing is sent otherwise.
SENTRY_DSN = env_str("SENTRY_DSN")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", "production")
try:
    SENTRY_TRACES_SAMPLE_RATE = float(env_str("SENTRY_TRACES_SAMPLE_RATE", "0") or 0)
except ValueError:
    SENTRY_TRACES_SAMPLE_RATE = -1.0
if not 0 <= SENTRY_TRACES_SAMPLE_RATE <= 1:
    raise ImproperlyConfigured("SENTRY_TRACES_SAMPLE_RATE must be a number from 0 to 1")
if SENTRY_DSN:
    from revid.sentry import init_sentry

    init_sentry(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )

# Batches (POST /paid/image/remove/background/batch): the most items, bytes
# and pixels one may hold (checked before the charge), and how many of its
# items are in the queue at once (the others wait their turn, so one batch
# cannot starve other customers' single images).
BATCH_MAX_ITEMS = env_int("BATCH_MAX_ITEMS", 100, minimum=1)
BATCH_MAX_BYTES = env_int("BATCH_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
BATCH_MAX_PIXELS = env_int("BATCH_MAX_PIXELS", 500_000_000, minimum=1)
BATCH_CONCURRENCY = env_int("BATCH_CONCURRENCY", 1, minimum=1)

# Logs: text (the default) or one JSON object per line (LOG_FORMAT=json),
# each with the request id of the request or job it belongs to.
LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
LOGGING = logging_config(LOG_FORMAT, env_str("LOG_LEVEL", "INFO"))

# Prometheus: GET /metrics. Without METRICS_TOKEN it answers loopback clients
# only, and only with DJANGO_DEBUG on (make run); otherwise it needs
# "Authorization: Bearer <METRICS_TOKEN>". Processes of one machine share
# their metrics through files in PROMETHEUS_MULTIPROC_DIR (one per instance).
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
PROMETHEUS_MULTIPROC_DIR = Path(
    env_str("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics"))
).resolve()
PROMETHEUS_MULTIPROC_DIR.mkdir(parents=True, exist_ok=True)
# prometheus-client reads it from the environment when first imported.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(PROMETHEUS_MULTIPROC_DIR)
