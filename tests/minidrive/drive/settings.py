"""Settings of the mini Drive backend (stand-in for suitenumerique/drive v0.21.1 ``drive.settings``).

What it imitates, faithfully, because the robustness patch set depends on it:

* django-configurations classes ``Base``, ``Development``, ``Test``, ``Production`` chosen with
  ``DJANGO_CONFIGURATION``; values read from the environment with the same variable names and defaults
  as Drive (``DJANGO_ALLOWED_HOSTS``, ``DJANGO_SECRET_KEY``, ``DB_*``/``DATABASE_URL``, ``REDIS_URL``,
  every ``OIDC_*`` setting the login / resource-server code reads, the ``WOPI_*`` settings and crontab).
* A ``values.Value(..., environ_name=...)`` is resolved when this module is *imported* (that is how
  django-configurations treats values with an explicit ``environ_name``, in Drive too): change the
  environment before the first import, or run a subprocess.
* ``AUTHENTICATION_BACKENDS``, DRF's default authentication classes, dockerflow's middleware and app,
  Production's ``SECURE_SSL_REDIRECT`` with the heartbeat paths exempt, Production's
  ``ALLOWED_HOSTS`` = ``DJANGO_ALLOWED_HOSTS`` + the container's own IP address.
* ``post_setup`` builds ``WOPI_CLIENTS_CONFIGURATION`` from ``WOPI_<CLIENT>_DISCOVERY_URL`` (required
  for every client listed in ``WOPI_CLIENTS``).

What it leaves out: S3 storage (files go to ``MEDIA_ROOT`` on the local disk), whitenoise, CORS,
sentry, posthog, search, parler, ltree, spectacular, e2e/demo apps, debug toolbar, the long lists of
allowed file types, malware detection, entitlements, email.

Deviations, each kept as small as possible:

* Cache: Drive always uses django-redis (``REDIS_URL``, default ``redis://redis:6379/0``). Here the
  Redis cache is used when ``REDIS_URL`` is set (django-redis if installed, else Django's own Redis
  backend, same key format ``<prefix>:<version>:<key>``); without ``REDIS_URL`` a file cache under
  ``MINIDRIVE_CACHE_DIR`` (default ``/tmp/minidrive-cache``) is shared by every process of one
  container. ``Test`` uses LocMemCache exactly like Drive's ``Test``.
* ``Test`` defaults to SQLite (``DB_ENGINE``/``DB_NAME`` still override); Drive's Test uses PostgreSQL.
* ``Test`` and ``Development`` carry a throw-away secret key default; ``Base``/``Production`` need
  ``DJANGO_SECRET_KEY`` like Drive.
* ``MEDIA_ROOT`` can be moved with ``MEDIA_ROOT`` (Drive: ``$DATA_DIR/media`` only).
"""

import importlib.util
import os
from socket import gethostbyname, gethostname

from configurations import Configuration, values
from lasuite.configuration.values import SecretFileValue

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("DATA_DIR", os.path.join("/", "data"))

_HAS_DJANGO_REDIS = importlib.util.find_spec("django_redis") is not None
_HAS_STANDARDIZED_ERRORS = importlib.util.find_spec("drf_standardized_errors") is not None


def _redis_cache(location, timeout, key_prefix=None):
    """One CACHES entry for Redis: django-redis like Drive, else Django's built-in Redis cache."""
    if _HAS_DJANGO_REDIS:
        entry = {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "TIMEOUT": timeout,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    else:
        entry = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": location,
            "TIMEOUT": timeout,
        }
    if key_prefix is not None:
        entry["KEY_PREFIX"] = key_prefix
    return entry


def _caches():
    """Drive's two caches ("default" and "session"); see the module docstring for the fallback."""
    redis_url = os.environ.get("REDIS_URL")
    default_timeout = values.IntegerValue(30, environ_name="CACHES_DEFAULT_TIMEOUT", environ_prefix=None)
    session_timeout = values.IntegerValue(30, environ_name="CACHES_SESSION_TIMEOUT", environ_prefix=None)
    key_prefix = values.Value("drive", environ_name="CACHES_DEFAULT_KEY_PREFIX", environ_prefix=None)
    if redis_url:
        return {
            "default": _redis_cache(redis_url, default_timeout, key_prefix),
            "session": _redis_cache(redis_url, session_timeout),
        }
    cache_dir = os.environ.get("MINIDRIVE_CACHE_DIR", os.path.join("/tmp", "minidrive-cache"))  # noqa: S108
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.path.join(cache_dir, "default"),
            "TIMEOUT": default_timeout,
            "KEY_PREFIX": key_prefix,
        },
        "session": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.path.join(cache_dir, "session"),
            "TIMEOUT": session_timeout,
        },
    }


def _database():
    """Drive's DATABASES["default"]: DATABASE_URL (dj-database-url) or the DB_* variables."""
    if os.environ.get("DATABASE_URL"):
        import dj_database_url  # noqa: PLC0415  (optional, only needed with DATABASE_URL, as in Drive)

        return dj_database_url.config()
    return {
        "ENGINE": values.Value(
            "django.db.backends.postgresql", environ_name="DB_ENGINE", environ_prefix=None
        ),
        "NAME": values.Value("drive", environ_name="DB_NAME", environ_prefix=None),
        "USER": values.Value("dinum", environ_name="DB_USER", environ_prefix=None),
        "PASSWORD": SecretFileValue("pass", environ_name="DB_PASSWORD", environ_prefix=None),
        "HOST": values.Value("localhost", environ_name="DB_HOST", environ_prefix=None),
        "PORT": values.Value(5432, environ_name="DB_PORT", environ_prefix=None),
    }


class Base(Configuration):
    """Settings every configuration inherits (Drive's ``Base``, reduced to what the lab needs)."""

    DEBUG = False
    API_VERSION = "v1.0"

    # Security
    ALLOWED_HOSTS = values.ListValue([])  # DJANGO_ALLOWED_HOSTS
    SECRET_KEY = SecretFileValue(None)  # DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE)

    ROOT_URLCONF = "drive.urls"
    WSGI_APPLICATION = "drive.wsgi.application"

    DATABASES = {"default": _database()}
    DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

    # Static / media
    STATIC_URL = "/static/"
    STATIC_ROOT = os.path.join(DATA_DIR, "static")
    MEDIA_URL = "/media/"
    MEDIA_ROOT = os.environ.get("MEDIA_ROOT", os.path.join(DATA_DIR, "media"))
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    DATA_UPLOAD_MAX_MEMORY_SIZE = values.PositiveIntegerValue(
        2 * 1024**3, environ_name="DATA_UPLOAD_MAX_MEMORY_SIZE", environ_prefix=None
    )

    LANGUAGE_CODE = values.Value("en-us")
    TIME_ZONE = "UTC"
    USE_I18N = True
    USE_TZ = True
    SITE_ID = 1

    TEMPLATES = [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                    "django.template.context_processors.request",
                ],
            },
        },
    ]

    MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "dockerflow.django.middleware.DockerflowMiddleware",
    ]

    AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend",
        "core.authentication.backends.OIDCAuthenticationBackend",
    ]

    INSTALLED_APPS = [
        "core",
        "wopi",
        "dockerflow.django",
        "rest_framework",
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.sites",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "mozilla_django_oidc",
    ]
    if _HAS_STANDARDIZED_ERRORS:
        INSTALLED_APPS.insert(2, "drf_standardized_errors")

    CACHES = _caches()

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": (
            "mozilla_django_oidc.contrib.drf.OIDCAuthentication",
            "rest_framework.authentication.SessionAuthentication",
        ),
        "DEFAULT_PARSER_CLASSES": [
            "rest_framework.parsers.JSONParser",
            "rest_framework.parsers.MultiPartParser",
        ],
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "EXCEPTION_HANDLER": "core.api.exception_handler",
        "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
        "PAGE_SIZE": 20,
        "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
    }

    AUTH_USER_MODEL = "core.User"

    # Celery (CELERY_BROKER_URL is read from DJANGO_CELERY_BROKER_URL: default prefix "DJANGO")
    CELERY_BROKER_URL = values.Value("redis://redis:6379/0")
    CELERY_BROKER_TRANSPORT_OPTIONS = values.DictValue({})
    CELERY_TASK_ROUTES = values.DictValue({})

    # Session
    SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    SESSION_CACHE_ALIAS = "session"
    SESSION_COOKIE_AGE = 60 * 60 * 12

    # OIDC - Authorization Code Flow (names, env names and defaults as in Drive v0.21.1)
    OIDC_CREATE_USER = values.BooleanValue(default=True, environ_name="OIDC_CREATE_USER")
    OIDC_AUTHENTICATE_CLASS = "lasuite.oidc_login.views.OIDCAuthenticationRequestView"
    OIDC_CALLBACK_CLASS = "core.authentication.views.OIDCAuthenticationCallbackView"
    OIDC_RP_SIGN_ALGO = values.Value("RS256", environ_name="OIDC_RP_SIGN_ALGO", environ_prefix=None)
    OIDC_RP_CLIENT_ID = values.Value("drive", environ_name="OIDC_RP_CLIENT_ID", environ_prefix=None)
    OIDC_RP_CLIENT_SECRET = SecretFileValue(None, environ_name="OIDC_RP_CLIENT_SECRET", environ_prefix=None)
    OIDC_OP_JWKS_ENDPOINT = values.Value(environ_name="OIDC_OP_JWKS_ENDPOINT", environ_prefix=None)
    OIDC_OP_AUTHORIZATION_ENDPOINT = values.Value(
        environ_name="OIDC_OP_AUTHORIZATION_ENDPOINT", environ_prefix=None
    )
    OIDC_OP_TOKEN_ENDPOINT = values.Value(None, environ_name="OIDC_OP_TOKEN_ENDPOINT", environ_prefix=None)
    OIDC_OP_USER_ENDPOINT = values.Value(None, environ_name="OIDC_OP_USER_ENDPOINT", environ_prefix=None)
    OIDC_OP_LOGOUT_ENDPOINT = values.Value(None, environ_name="OIDC_OP_LOGOUT_ENDPOINT", environ_prefix=None)
    OIDC_REDIRECT_FIELD_NAME = values.Value(
        "returnTo", environ_name="OIDC_REDIRECT_FIELD_NAME", environ_prefix=None
    )
    OIDC_AUTH_REQUEST_EXTRA_PARAMS = values.DictValue(
        {}, environ_name="OIDC_AUTH_REQUEST_EXTRA_PARAMS", environ_prefix=None
    )
    OIDC_RP_SCOPES = values.Value("openid email", environ_name="OIDC_RP_SCOPES", environ_prefix=None)
    LOGIN_REDIRECT_URL = values.Value(None, environ_name="LOGIN_REDIRECT_URL", environ_prefix=None)
    LOGIN_REDIRECT_URL_FAILURE = values.Value(
        None, environ_name="LOGIN_REDIRECT_URL_FAILURE", environ_prefix=None
    )
    LOGOUT_REDIRECT_URL = values.Value(None, environ_name="LOGOUT_REDIRECT_URL", environ_prefix=None)
    OIDC_USE_NONCE = values.BooleanValue(default=True, environ_name="OIDC_USE_NONCE", environ_prefix=None)
    OIDC_REDIRECT_REQUIRE_HTTPS = values.BooleanValue(
        default=False, environ_name="OIDC_REDIRECT_REQUIRE_HTTPS", environ_prefix=None
    )
    OIDC_REDIRECT_ALLOWED_HOSTS = values.ListValue(
        default=[], environ_name="OIDC_REDIRECT_ALLOWED_HOSTS", environ_prefix=None
    )
    OIDC_STORE_ID_TOKEN = values.BooleanValue(
        default=True, environ_name="OIDC_STORE_ID_TOKEN", environ_prefix=None
    )
    OIDC_USE_PKCE = values.BooleanValue(default=False, environ_name="OIDC_USE_PKCE", environ_prefix=None)
    OIDC_PKCE_CODE_CHALLENGE_METHOD = values.Value(
        default="S256", environ_name="OIDC_PKCE_CODE_CHALLENGE_METHOD", environ_prefix=None
    )
    OIDC_PKCE_CODE_VERIFIER_SIZE = values.IntegerValue(
        default=64, environ_name="OIDC_PKCE_CODE_VERIFIER_SIZE", environ_prefix=None
    )
    OIDC_FALLBACK_TO_EMAIL_FOR_IDENTIFICATION = values.BooleanValue(
        default=True, environ_name="OIDC_FALLBACK_TO_EMAIL_FOR_IDENTIFICATION", environ_prefix=None
    )
    OIDC_STORE_ACCESS_TOKEN = values.BooleanValue(
        default=False, environ_name="OIDC_STORE_ACCESS_TOKEN", environ_prefix=None
    )
    OIDC_STORE_REFRESH_TOKEN = values.BooleanValue(
        default=False, environ_name="OIDC_STORE_REFRESH_TOKEN", environ_prefix=None
    )
    OIDC_STORE_REFRESH_TOKEN_KEY = values.Value(
        default=None, environ_name="OIDC_STORE_REFRESH_TOKEN_KEY", environ_prefix=None
    )
    OIDC_STORE_CLAIMS = values.ListValue(default=[], environ_name="OIDC_STORE_CLAIMS", environ_prefix=None)
    OIDC_ALLOW_DUPLICATE_EMAILS = values.BooleanValue(
        default=False, environ_name="OIDC_ALLOW_DUPLICATE_EMAILS", environ_prefix=None
    )
    OIDC_USER_INFO = values.ListValue(
        default=values.ListValue(default=[], environ_name="USER_OIDC_ESSENTIAL_CLAIMS", environ_prefix=None),
        environ_name="OIDC_USER_INFO",
        environ_prefix=None,
    )
    OIDC_USERINFO_FULLNAME_FIELDS = values.ListValue(
        default=["first_name", "last_name"], environ_name="OIDC_USERINFO_FULLNAME_FIELDS", environ_prefix=None
    )
    OIDC_USERINFO_SHORTNAME_FIELD = values.Value(
        default="first_name", environ_name="OIDC_USERINFO_SHORTNAME_FIELD", environ_prefix=None
    )

    # OIDC Resource Server (read directly from settings by django-lasuite)
    OIDC_RESOURCE_SERVER_ENABLED = values.BooleanValue(
        default=False, environ_name="OIDC_RESOURCE_SERVER_ENABLED", environ_prefix=None
    )
    OIDC_RS_BACKEND_CLASS = values.Value(
        "lasuite.oidc_resource_server.backend.ResourceServerBackend",
        environ_name="OIDC_RS_BACKEND_CLASS",
        environ_prefix=None,
    )
    OIDC_OP_URL = values.Value(None, environ_name="OIDC_OP_URL", environ_prefix=None)
    OIDC_VERIFY_SSL = values.BooleanValue(default=True, environ_name="OIDC_VERIFY_SSL", environ_prefix=None)
    OIDC_TIMEOUT = values.PositiveIntegerValue(3, environ_name="OIDC_TIMEOUT", environ_prefix=None)
    OIDC_PROXY = values.Value(None, environ_name="OIDC_PROXY", environ_prefix=None)
    OIDC_OP_INTROSPECTION_ENDPOINT = values.Value(
        None, environ_name="OIDC_OP_INTROSPECTION_ENDPOINT", environ_prefix=None
    )
    OIDC_RS_CLIENT_ID = values.Value(None, environ_name="OIDC_RS_CLIENT_ID", environ_prefix=None)
    OIDC_RS_CLIENT_SECRET = values.Value(None, environ_name="OIDC_RS_CLIENT_SECRET", environ_prefix=None)
    OIDC_RS_AUDIENCE_CLAIM = values.Value(
        "client_id", environ_name="OIDC_RS_AUDIENCE_CLAIM", environ_prefix=None
    )
    OIDC_RS_ENCRYPTION_ENCODING = values.Value(
        "A256GCM", environ_name="OIDC_RS_ENCRYPTION_ENCODING", environ_prefix=None
    )
    OIDC_RS_ENCRYPTION_ALGO = values.Value(
        "RSA-OAEP", environ_name="OIDC_RS_ENCRYPTION_ALGO", environ_prefix=None
    )
    OIDC_RS_SIGNING_ALGO = values.Value("ES256", environ_name="OIDC_RS_SIGNING_ALGO", environ_prefix=None)
    OIDC_RS_SCOPES = values.ListValue(["openid"], environ_name="OIDC_RS_SCOPES", environ_prefix=None)
    OIDC_RS_ALLOWED_AUDIENCES = values.ListValue(
        default=[], environ_name="OIDC_RS_ALLOWED_AUDIENCES", environ_prefix=None
    )

    ALLOW_LOGOUT_GET_METHOD = values.BooleanValue(
        default=True, environ_name="ALLOW_LOGOUT_GET_METHOD", environ_prefix=None
    )

    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"simple": {"format": "{asctime} {name} {levelname} {message}", "style": "{"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "simple"}},
        "root": {
            "handlers": ["console"],
            "level": values.Value("INFO", environ_name="LOGGING_LEVEL_LOGGERS_ROOT", environ_prefix=None),
        },
    }

    # WOPI: WOPI_CLIENTS lists client names; post_setup requires WOPI_<CLIENT>_DISCOVERY_URL for each.
    WOPI_CLIENTS = values.ListValue([], environ_name="WOPI_CLIENTS", environ_prefix=None)
    WOPI_CLIENTS_CONFIGURATION = {}
    WOPI_EXCLUDED_MIMETYPES = values.ListValue(
        [
            "image/svg+xml",
            "image/png",
            "image/jpg",
            "image/jpeg",
            "image/gif",
            "image/bmp",
            "image/tiff",
            "image/webp",
            "application/pdf",
            "image/x-wpg",
            "image/cgm",
            "image/vnd.dxf",
            "image/x-emf",
            "image/x-wmf",
            "image/x-freehand",
        ],
        environ_name="WOPI_EXCLUDED_MIMETYPES",
        environ_prefix=None,
    )
    WOPI_EXCLUDED_EXTENSIONS = values.ListValue(
        ["svg", "png", "jpg", "jpeg", "gif", "bmp", "tiff", "webp", "pdf"],
        environ_name="WOPI_EXCLUDED_EXTENSIONS",
        environ_prefix=None,
    )
    WOPI_CONFIGURATION_CACHE_EXPIRATION = values.IntegerValue(
        60 * 60 * 24, environ_name="WOPI_CONFIGURATION_CACHE_EXPIRATION", environ_prefix=None
    )
    WOPI_SRC_BASE_URL = values.Value(None, environ_name="WOPI_SRC_BASE_URL", environ_prefix=None)
    WOPI_ACCESS_TOKEN_TIMEOUT = values.IntegerValue(
        60 * 60 * 10, environ_name="WOPI_ACCESS_TOKEN_TIMEOUT", environ_prefix=None
    )
    WOPI_DISABLE_CHAT = values.IntegerValue(0, environ_name="WOPI_DISABLE_CHAT", environ_prefix=None)
    WOPI_CONFIGURATION_CRONTAB_MINUTE = values.Value(
        0, environ_name="WOPI_CONFIGURATION_CRONTAB_MINUTE", environ_prefix=None
    )
    WOPI_CONFIGURATION_CRONTAB_HOUR = values.Value(
        3, environ_name="WOPI_CONFIGURATION_CRONTAB_HOUR", environ_prefix=None
    )
    WOPI_CONFIGURATION_CRONTAB_DAY_OF_MONTH = values.Value(
        "*", environ_name="WOPI_CONFIGURATION_CRONTAB_DAY_OF_MONTH", environ_prefix=None
    )
    WOPI_CONFIGURATION_CRONTAB_MONTH_OF_YEAR = values.Value(
        "*", environ_name="WOPI_CONFIGURATION_CRONTAB_MONTH_OF_YEAR", environ_prefix=None
    )

    # pylint: disable=invalid-name
    @property
    def ENVIRONMENT(self):
        """Environment in which the application is launched (the class name, lower case)."""
        return self.__class__.__name__.lower()

    @classmethod
    def post_setup(cls):
        """Build WOPI_CLIENTS_CONFIGURATION from the per-client variables, as Drive does."""
        super().post_setup()

        if cls.OIDC_FALLBACK_TO_EMAIL_FOR_IDENTIFICATION and cls.OIDC_ALLOW_DUPLICATE_EMAILS:
            raise ValueError(
                "OIDC_FALLBACK_TO_EMAIL_FOR_IDENTIFICATION and OIDC_ALLOW_DUPLICATE_EMAILS "
                "cannot both be True."
            )

        for wopi_client in cls.WOPI_CLIENTS or []:
            upper = wopi_client.upper()
            cls.WOPI_CLIENTS_CONFIGURATION[wopi_client] = {
                "discovery_url": values.Value(
                    None,
                    environ_name=f"WOPI_{upper}_DISCOVERY_URL",
                    environ_prefix=None,
                    environ_required=True,
                ),
                "mimetypes": {},
                "extensions": {},
                "options": values.DictValue({}, environ_name=f"WOPI_{upper}_OPTIONS", environ_prefix=None),
            }


class Development(Base):
    """Development settings: DEBUG, every host allowed, a throw-away secret key default."""

    ALLOWED_HOSTS = ["*"]
    DEBUG = True
    SECRET_KEY = SecretFileValue("minidrive-development-secret-key-not-for-production")
    SESSION_COOKIE_NAME = "drive_sessionid"


class Test(Base):
    """Unit-test settings: LocMemCache like Drive's Test, eager celery, SQLite unless DB_ENGINE says so."""

    SECRET_KEY = SecretFileValue("minidrive-test-secret-key-not-for-production")
    ALLOWED_HOSTS = values.ListValue(["testserver", "localhost", "127.0.0.1"])
    SESSION_CACHE_ALIAS = "default"
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    DATABASES = {
        "default": {
            "ENGINE": values.Value(
                "django.db.backends.sqlite3", environ_name="DB_ENGINE", environ_prefix=None
            ),
            "NAME": values.Value(":memory:", environ_name="DB_NAME", environ_prefix=None),
        }
    }
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    CELERY_TASK_ALWAYS_EAGER = values.BooleanValue(True)
    OIDC_STORE_ACCESS_TOKEN = False
    OIDC_STORE_REFRESH_TOKEN = False


class Production(Base):
    """Production settings: DJANGO_ALLOWED_HOSTS + own IP, HTTPS redirect except the heartbeats."""

    ALLOWED_HOSTS = [
        *values.ListValue([], environ_name="ALLOWED_HOSTS"),
        gethostbyname(gethostname()),
    ]
    CSRF_TRUSTED_ORIGINS = values.ListValue([])
    SECURE_BROWSER_XSS_FILTER = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 60
    SECURE_HSTS_PRELOAD = True
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [
        "^__lbheartbeat__",
        "^__heartbeat__",
    ]
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_SECURE = True
    SECURE_REFERRER_POLICY = "same-origin"
