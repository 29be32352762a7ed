"""Celery task package for the WOPI app.

Deliberately empty, like Drive's: celery's autodiscovery imports this package only, not
``configure_wopi`` (see ``drive/celery_app.py`` for how that module gets imported).
"""
