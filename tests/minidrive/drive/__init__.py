"""Mini Drive project package (stand-in for Drive's ``drive`` package).

As in Drive, importing the package imports the celery app first, which installs
django-configurations' importer and defaults DJANGO_SETTINGS_MODULE=drive.settings and
DJANGO_CONFIGURATION=Development.
"""

from .celery_app import app as celery_app

__all__ = ["celery_app"]
