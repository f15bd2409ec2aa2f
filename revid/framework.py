"""The Django and library wiring that no environment variable changes.

revid/settings.py reads the environment; this module holds the lists and
dicts it plugs in unchanged (apps, middleware, templates, DRF and its
schema, upload handlers, logging), so that file stays about the knobs.
"""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    # Swagger UI's own files, served from here: /api/docs/ works offline.
    "drf_spectacular_sidecar",
    "django_q",
    "allauth",
    "allauth.account",
    "accounts",
    "billing",
    "removal",
    "webhooks",
    "doors",
]

MIDDLEWARE = [
    # First: every request gets its id and one log line (revid.observability).
    "revid.observability.RequestLogMiddleware",
    # Before the checks that read the scheme and host: PUBLIC_BASE_URL's.
    "revid.middleware.PublicBaseUrlMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads a body (the CSRF check parses uploads).
    "doors.uploads.ChunkedBodyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # Last: an ApplicationError from a plain view becomes its JSON error.
    "revid.errors.ApplicationErrorMiddleware",
]

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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

FILE_UPLOAD_HANDLERS = [
    "doors.uploads.MaxUploadSizeHandler",  # first: it stops the read at MAX_UPLOAD_BYTES
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.authentication.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.MultiPartParser",
        "rest_framework.parsers.FormParser",
    ],
    "EXCEPTION_HANDLER": "revid.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
}
API_KEY_CUSTOM_HEADER = "HTTP_X_API_KEY"

SPECTACULAR_SETTINGS = {
    "TITLE": "Remove Background API",
    "DESCRIPTION": "Remove the background of an image with rembg's U2-Net models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from drf-spectacular-sidecar's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The seed API's output formats; remove.bg's (with "auto") keep their own enum.
    "ENUM_NAME_OVERRIDES": {
        "OutputFormatEnum": "imaging.formats.FORMATS",
        "RequestedFormatEnum": "imaging.options.REQUESTED_FORMATS",
        "SeedSizeEnum": "imaging.options.SEED_SIZES",
    },
}


def logging_config(log_format: str, level: str) -> dict:
    """Django's LOGGING: text or one JSON object per line, each with its request id."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "revid.observability.RequestIdFilter"}},
        "formatters": {
            "text": {"format": "%(levelname)s %(name)s %(message)s"},
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "filters": ["request_id"],
                "formatter": log_format,
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
