"""Drive's settings with the lazy OIDC add-on switched on (django-configurations wrapper).

Where it runs
    In Drive's backend and celery-worker containers, mounted at /opt/robust/drive_robust_settings.py
    next to lazy_oidc.py. The recipe selects it with PYTHONPATH=/opt/robust and
    DJANGO_SETTINGS_MODULE=drive_robust_settings; Drive's wsgi.py, celery_app.py and manage.py only
    ``os.environ.setdefault`` that variable, so the environment wins for gunicorn, celery and
    ``python manage.py ...`` alike. Nothing in Drive's code or image changes.

What it needs
    Drive's ``drive.settings`` importable (WORKDIR /app in Drive's image), django-configurations (its
    importer is installed by Drive's wsgi/celery/manage before settings load) and lazy_oidc.py on the
    path.

Behaviour
    It imports Drive's settings module as an ordinary module and, for every django-configurations
    class defined there (Production, Development, Test, Build, ...), defines a subclass of the same
    name here. django-configurations picks the one named by DJANGO_CONFIGURATION (or --configuration),
    exactly as it would in drive.settings. The subclass runs Drive's own setup, then applies
    ``lazy_oidc.settings_overrides()``:
      * every empty OIDC_OP_*_ENDPOINT becomes a lazy value resolved from the provider's discovery
        document at first use (explicit values are kept and win);
      * AUTHENTICATION_BACKENDS gains lazy_oidc.OIDCAuthenticationBackend (a subclass of Drive's) just
        before Drive's own entry, which stays listed because existing sessions name it;
        OIDC_DRF_AUTH_BACKEND points DRF at the lazy backend;
      * OIDC_CALLBACK_CLASS becomes a subclass of Drive's callback view; MIDDLEWARE gains
        lazy_oidc.ProviderUnavailableMiddleware (503 + Retry-After); mozilla's DRF authentication class
        is replaced by its lazy_oidc subclass;
      * OIDC_OP_DISCOVERY_URL and OIDC_DISCOVERY_* are read from the environment (see lazy_oidc).
    Everything else is Drive's, including Drive's module-level names (BASE_DIR, DATA_DIR, ...) that
    Django exposes as settings. With OIDC_OP_URL empty, or OIDC_DISCOVERY_ENABLED=false, the settings
    are exactly Drive's.

Environment variables read here
    DRIVE_ROBUST_BASE_SETTINGS  module to wrap (default "drive.settings")
    OIDC_DISCOVERY_ENABLED, OIDC_OP_DISCOVERY_URL, OIDC_DISCOVERY_ALLOW_HTTP, OIDC_DISCOVERY_TTL,
    OIDC_DISCOVERY_MAX_TIME, OIDC_DISCOVERY_COOLDOWN   read by lazy_oidc.settings_overrides()
    (Drive's own variables are read by Drive's classes as usual.)
"""

import importlib
import os

import lazy_oidc
from configurations import Configuration

BASE_SETTINGS_MODULE = os.environ.get("DRIVE_ROBUST_BASE_SETTINGS", "drive.settings")
_base = importlib.import_module(BASE_SETTINGS_MODULE)


def _wrap(base):
    """A configuration class named like ``base`` that switches the lazy OIDC add-on on."""

    class Wrapped(base):
        @classmethod
        def setup(cls):
            super().setup()
            overrides = lazy_oidc.settings_overrides(lambda name, default=None: getattr(cls, name, default))
            for name, value in overrides.items():
                setattr(cls, name, value)

    Wrapped.__name__ = base.__name__
    Wrapped.__qualname__ = base.__name__
    Wrapped.__module__ = __name__
    Wrapped.__doc__ = f"{base.__module__}.{base.__name__} with the lazy OIDC add-on (lazy_oidc)."
    return Wrapped


def _export():
    names = {}
    for name, value in vars(_base).items():
        is_class = isinstance(value, type) and issubclass(value, Configuration)
        if is_class and value.__module__ == _base.__name__:
            names[name] = _wrap(value)
        elif name.isupper():
            names[name] = value  # module-level settings of Drive (BASE_DIR, DATA_DIR, ...)
    return names


globals().update(_export())
