"""WSGI entry point of the mini Drive (as Drive's: django-configurations' WSGI handler).

gunicorn runs ``drive.wsgi:application`` with ``/usr/local/etc/gunicorn/drive.py``.
"""

import os

from configurations.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "drive.settings")
os.environ.setdefault("DJANGO_CONFIGURATION", "Development")

application = get_wsgi_application()
