"""Celery app of the mini Drive (same wiring as Drive's ``drive/celery_app.py``).

Imitated: settings module/configuration defaults, ``configurations.importer.install``, configuration
from Django settings with the ``CELERY_`` namespace (broker URL from ``DJANGO_CELERY_BROKER_URL``), and
``autodiscover_tasks`` over INSTALLED_APPS. Autodiscovery imports only ``<app>.tasks``; like Drive's,
``wopi/tasks/__init__.py`` is empty, so the WOPI task module (and its beat hook) is imported through the
URLconf: celery's Django fixup runs Django's system checks when task modules are imported (unless
``CELERY_SKIP_CHECKS`` is set), the URL check imports ``drive.urls`` → ``core.api.viewsets`` →
``wopi.utils`` → ``wopi.tasks.configure_wopi``.

Left out: task routes and Drive's other tasks.
"""

import os

from celery import Celery
from configurations.importer import install

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drive.settings")
os.environ.setdefault("DJANGO_CONFIGURATION", "Development")

install(check_options=True)

from django.conf import settings  # noqa: E402  (only after install())

app = Celery("drive")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(lambda: settings.INSTALLED_APPS)
